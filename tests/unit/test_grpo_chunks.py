"""plan_chunks: length-aware micro-batches give the full batch's log-probs and loss with less padding."""

import torch

from rlvr.train.update import plan_chunks


def _mask(prompt_lens, completion_lens, p, t):
    mask = torch.zeros(len(prompt_lens), p + t, dtype=torch.long)  # [N, P + T]
    for i, (a, b) in enumerate(zip(prompt_lens, completion_lens)):
        mask[i, p - a:p + b] = 1
    return mask


def test_groups_stay_whole_and_every_row_is_covered_once():
    # 4 groups of 2: completion lengths 30, 5, 28, 6 -> the short groups share a chunk, the long ones another
    completion = [30, 29, 5, 4, 28, 27, 6, 6]
    mask = _mask([3, 3, 5, 5, 2, 2, 4, 4], completion, p=5, t=30)
    chunks = plan_chunks(mask, 5, group_size=2, max_rows=8, overhead=10)
    rows = torch.cat([c.rows for c in chunks]).tolist()
    assert sorted(rows) == list(range(8))
    for c in chunks:
        r = c.rows.tolist()
        assert all(r[i + 1] == r[i] + 1 for i in range(0, len(r), 2))  # each group's rows consecutive, in order
        assert c.width == max(completion[i] for i in r)
        assert c.start == min(5 - [3, 3, 5, 5, 2, 2, 4, 4][i] for i in r)
    assert sorted(sorted(c.rows.tolist()) for c in chunks) == [[0, 1, 4, 5], [2, 3, 6, 7]]


def test_a_large_overhead_keeps_one_chunk_and_max_rows_is_respected():
    mask = _mask([3] * 8, [30, 29, 5, 4, 28, 27, 6, 6], p=5, t=30)
    assert len(plan_chunks(mask, 5, group_size=2, max_rows=8, overhead=10**6)) == 1
    assert all(len(c.rows) <= 4 for c in plan_chunks(mask, 5, group_size=2, max_rows=4, overhead=10**6))


def test_groups_larger_than_a_micro_batch_fall_back_to_slices_in_order():
    mask = _mask([3] * 8, [3, 9, 1, 2, 8, 7, 6, 6], p=5, t=9)
    chunks = plan_chunks(mask, 5, group_size=4, max_rows=3)
    assert [c.rows.tolist() for c in chunks] == [[0, 1, 2], [3, 4, 5], [6, 7]]
    assert [c.width for c in chunks] == [9, 8, 6]


def test_trimmed_chunks_reproduce_the_full_forwards_logprobs(tiny_model_dir):
    from transformers import AutoModelForCausalLM

    from rlvr.algo.logprobs import token_logprobs

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    p, t, g = 6, 12, 2
    prompt_lens, completion_lens = [4, 4, 6, 6, 3, 3], [12, 5, 3, 2, 7, 9]
    mask = _mask(prompt_lens, completion_lens, p, t)
    ids = torch.randint(3, 100, mask.shape) * mask  # [N, P + T] pad id 0
    for i in range(0, 6, g):  # a group shares its prompt
        ids[i + 1, :p] = ids[i, :p]
    full = token_logprobs(model, ids, mask, p, 1.0)  # [N, T]
    chunks = plan_chunks(mask, p, group_size=g, max_rows=4, overhead=0)
    assert len(chunks) > 1 and any(c.width < t or c.start > 0 for c in chunks)
    for c in chunks:
        part = token_logprobs(model, c.inputs(ids, p), c.inputs(mask, p), p - c.start, 1.0)  # [n, T_c]
        real = c.completion(mask[:, p:]).bool()
        assert torch.allclose(part[real], c.completion(full)[real], atol=1e-5)
