"""Contamination check: a planted overlap is found; the real arith held-out split vs GSM8K is clean."""

from __future__ import annotations

import json

from rlvr.cli import main
from rlvr.config import ContaminationConfig
from rlvr.config.loading import compose_config
from rlvr.runs.contamination import check_contamination, check_task, normalize


def test_normalize_and_short_items():
    assert normalize("Natalia sold  clips to 48 of her friends, in April!") == \
        "natalia sold clips to 48 of her friends in april".split()
    assert normalize("ＡＢＣ\u00a0“quoted”") == ["abc", "quoted"]  # NFKC: full-width letters, nbsp, quotes
    long = "one two three four five six seven eight nine ten eleven twelve thirteen fourteen"
    report = check_contamination([long, "Start with 3. Add 4."], {
        "e": [("x", "zero " + " ".join(long.split()[:13])), ("y", "Start with 3, add 4!"), ("z", "unrelated")]}, n=13)
    s = report["eval_sets"][0]
    assert (s["ngram_hits"], s["exact_matches"], s["short_items"], s["count"]) == (1, 1, 2, 3)
    assert s["examples"][0]["ngram"] == " ".join(long.split()[:13])


def test_template_ngrams_are_ignored():
    template = "reply with the code in one python block and make sure it passes all of the tests"
    train = [f"task {i} {template}" for i in range(200)]
    report = check_contamination(train, {"e": [("a", f"a fresh problem {template}")]}, n=8)
    assert report["eval_sets"][0]["ngram_hits"] == 0 and report["train"]["ignored_boilerplate_ngrams"] > 0
    keep_all = check_contamination(train, {"e": [("a", f"a fresh problem {template}")]}, n=8, boilerplate_frac=1.0)
    assert keep_all["eval_sets"][0]["ngram_hits"] == 1


def test_planted_gsm8k_test_questions_are_found(tmp_path, data_dir):
    test = [json.loads(x) for x in (data_dir / "math" / "gsm8k_test.jsonl").read_text().splitlines()]
    train = [json.loads(x) for x in (data_dir / "math" / "gsm8k_train.jsonl").read_text().splitlines()[:1000]]
    planted = [dict(test[i], question=test[i]["question"].upper()) for i in (5, 50, 500)]  # case does not hide it
    paraphrased = dict(test[7], question="Here is a problem. " + test[7]["question"])  # embedded: n-gram hit only
    path = tmp_path / "train.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in train + planted + [paraphrased]))
    cfg = compose_config("check-contamination", [f"data_dir={data_dir}", "task=gsm8k", f"task.path={path}",
                                                  "contamination.max_examples=20"])
    report = check_task(cfg.task, cfg.data_dir, cfg.contamination, tmp_path / "out")
    s = report["eval_sets"][0]
    assert s["name"] == "gsm8k:test" and s["count"] == 1319
    hit_ids = {e["id"] for e in s["examples"]}
    assert {"gsm8k/test/5", "gsm8k/test/50", "gsm8k/test/500", "gsm8k/test/7"} <= hit_ids
    assert s["exact_matches"] == 3 and 4 <= s["ngram_hits"] <= 4 + 3  # + the few real near-duplicates
    assert report["train"]["count"] == 1004 and len(report["train"]["sha256"]) == 64
    assert json.loads((tmp_path / "out" / "contamination.json").read_text())["n"] == 13


def test_arith_vs_gsm8k_and_arith_train_vs_heldout_are_clean(tmp_path, data_dir):
    c = ContaminationConfig(eval_sets=["gsm8k:test", "arith:test", "arith:test_ops4"], max_train_prompts=2000)
    cfg = compose_config("check-contamination", [f"data_dir={data_dir}"])
    report = check_task(cfg.task, str(data_dir), c)
    by_name = {s["name"]: s for s in report["eval_sets"]}
    assert by_name["gsm8k:test"]["ngram_hits"] == 0 and by_name["gsm8k:test"]["exact_matches"] == 0
    # held-out arith problems are chosen by a text hash: none of them is a training prompt
    for name in ("arith:test", "arith:test_ops4"):
        assert by_name[name]["exact_matches"] == 0 and by_name[name]["count"] == 200
        assert by_name[name]["short_items"] > 150  # 13-grams cannot see ~8-word prompts: said, not hidden
    # the other direction: GSM8K train vs the arith held-out split
    gsm = compose_config("check-contamination", [f"data_dir={data_dir}", "task=gsm8k", "contamination.n=6",
                                                 "contamination.eval_sets=[arith:test]"])
    s = check_task(gsm.task, gsm.data_dir, gsm.contamination)["eval_sets"][0]
    assert (s["ngram_hits"], s["exact_matches"]) == (0, 0)


def test_command_writes_the_report_and_validates(tmp_path, data_dir, capsys):
    out = tmp_path / "cc"
    assert main(["check-contamination", f"data_dir={data_dir}", "contamination.n=6",
                 "contamination.max_train_prompts=500", "contamination.eval_sets=[arith:test_ops2,nope:test]",
                 f"output_dir={out}"]) == 1  # an unreadable eval set is reported, and the others still run
    report = json.loads((out / "contamination.json").read_text())
    assert report["eval_sets"][0]["name"] == "arith:test_ops2" and "error" in report["eval_sets"][1]
    # the console shows the report's own numbers, not just the eval-set names it was asked for
    printed = capsys.readouterr().out
    first = report["eval_sets"][0]
    assert f"{100 * first['ngram_hit_frac']:.2f}%" in printed and f"{report['train']['count']} training" in printed
    assert str(out / "contamination.json") in printed.replace("\n", "")
    assert main(["check-contamination", "contamination.n=0", "contamination.eval_sets=[]"]) == 2
    err = capsys.readouterr().err
    assert "contamination.n" in err and "contamination.eval_sets" in err
    assert main(["check-contamination", "--help"]) == 0
    assert "short prompts" in capsys.readouterr().out
