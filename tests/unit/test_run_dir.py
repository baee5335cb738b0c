"""``rlvr.runs.layout.RunDir``: the run-directory layout, the done markers and the one checkpoint lister (GRPO's
``step_N`` and TRL's ``checkpoint-N``, complete ones only), and the old names kept as thin uses of it."""

from __future__ import annotations

import json

from rlvr.runs.layout import RunDir, checkpoint_step, list_run_checkpoints


def make_checkpoint(folder, state_file: str | None, model: str | None = "config.json") -> None:
    folder.mkdir(parents=True)
    if model:
        (folder / model).write_text("{}")
    if state_file:
        (folder / state_file).write_text("{}")


def test_paths_follow_the_layout(tmp_path):
    run = RunDir(tmp_path / "out")
    assert run.config == tmp_path / "out" / "config.yaml"
    assert (run.metrics.name, run.samples.name, run.flagged.name) == ("metrics.jsonl", "samples.jsonl",
                                                                       "flagged.jsonl")
    assert (run.checkpoints, run.final, run.eval, run.plots) == tuple(tmp_path / "out" / d for d in
                                                                      ("checkpoints", "final", "eval", "plots"))
    assert run.step_checkpoint(7) == tmp_path / "out" / "checkpoints" / "step_7"
    assert run.done_marker("grpo") == tmp_path / "out" / "final" / "rlvr_grpo_done.json"
    assert run.done_marker("sft").name == "rlvr_sft_done.json"
    assert not (tmp_path / "out").exists()  # paths only: nothing is created


def test_done_marker_reads_back_and_a_torn_one_is_not_done(tmp_path):
    run = RunDir(tmp_path)
    assert run.read_done("grpo") is None
    run.final.mkdir()
    run.done_marker("grpo").write_text(json.dumps({"step": 5}))
    assert run.read_done("grpo") == {"step": 5} and run.read_done("sft") is None
    run.done_marker("grpo").write_text('{"step": ')
    assert run.read_done("grpo") is None


def test_one_lister_for_grpo_and_trl_checkpoints_complete_ones_only(tmp_path):
    run = RunDir(tmp_path)
    ck = run.checkpoints
    make_checkpoint(ck / "step_2", "trainer_state.pt")
    make_checkpoint(ck / "step_10", "trainer_state.pt")
    make_checkpoint(ck / "step_12.tmp", "trainer_state.pt")  # a save cut short: never renamed
    make_checkpoint(ck / "step_11", None)  # no state file yet
    make_checkpoint(ck / "step_13", "trainer_state.pt", model=None)  # no model in it
    make_checkpoint(ck / "checkpoint-4", "trainer_state.json")
    make_checkpoint(ck / "checkpoint-9", "trainer_state.json", model="adapter_config.json")  # a LoRA adapter
    make_checkpoint(ck / "checkpoint-20", None)
    make_checkpoint(ck / "checkpoint-3", "trainer_state.pt")  # another trainer's state file: not TRL's
    assert run.list_checkpoints("grpo") == [(2, ck / "step_2"), (10, ck / "step_10")]
    assert run.list_checkpoints("sft") == [(4, ck / "checkpoint-4"), (9, ck / "checkpoint-9")]
    assert [s for s, _ in run.list_checkpoints()] == [2, 4, 9, 10]
    assert run.newest_checkpoint("grpo") == ck / "step_10" and run.newest_checkpoint("sft") == ck / "checkpoint-9"
    assert RunDir(tmp_path / "empty").newest_checkpoint() is None
    assert list_run_checkpoints(tmp_path) == run.list_checkpoints()  # the old name, a thin use of RunDir
    assert (checkpoint_step(ck / "step_10"), checkpoint_step("checkpoint-4"), checkpoint_step("final")) == (10, 4, None)


def test_grpo_checkpoints_are_saved_where_the_lister_finds_them_and_old_ones_pruned(tmp_path, tiny_model_dir):
    """A real save: ``save_checkpoint`` writes ``RunDir.step_checkpoint(N)`` atomically and keeps the newest
    ``keep``; the monitors' state goes in and comes back."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, get_scheduler

    from rlvr.train.checkpoint import TrainerState, load_trainer_state, save_checkpoint

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    scheduler = get_scheduler("constant", optimizer)
    run = RunDir(tmp_path)
    monitors = {"lengths": [12.5, 13.0], "truncs": [0.0, 0.25], "rewards": [[1, 0.5]], "heldout": [], "trips": {}}
    for step in (1, 2, 3):
        save_checkpoint(tmp_path, TrainerState(step, 4 * step, monitors), model, tokenizer, optimizer, scheduler,
                        keep=2)
    assert [s for s, _ in run.list_checkpoints("grpo")] == [2, 3]
    assert not any(p.name.endswith(".tmp") for p in run.checkpoints.iterdir())
    state = load_trainer_state(run.newest_checkpoint("grpo"), optimizer, scheduler)
    assert (state.step, state.data_position, state.monitors) == (3, 12, monitors)
