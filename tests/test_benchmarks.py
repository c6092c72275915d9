"""Tests for ftrisk.prompts.benchmarks: registry counts, vendored data integrity, sampling, overlap, user files.

No models, no network. Test prompts written here are benign.
"""

import csv
import hashlib
import json
import random
from importlib import resources
from pathlib import Path

import pytest

from ftrisk.prompts import benchmarks as bm
from ftrisk.errors import FtriskError

REPO = Path(__file__).resolve().parents[1]
VENDORED = Path(str(resources.files("ftrisk").joinpath("data").joinpath("benchmarks")))

# sha256 values as published in the shared data README (/work/shared/data/README.md).
SHA256 = {
    "advbench/harmful_behaviors.csv": "6cd1a5c63c07610d7eb67307772ee5606017ee950b5770ab288a2c487489d3e1",
    "advbench/LICENSE": "1e4bb8e2313ef9ff36033526503aa8837c80ba1d4c055c2e7d9977760028eec7",
    "harmbench/harmbench_behaviors_text_test.csv": "75d257b3e7428c52eb7b0154318f455af3e01b09a3794b5e2f3d36054f3c0e29",
    "harmbench/harmbench_behaviors_text_val.csv": "7bfaaa5e2b9b95002c89e2d33c019f58e9e8496e2fc65d368f1eeb8179e69534",
    "harmbench/LICENSE.txt": "d0a231f9526f809628100ec2fcb9d5cb94ebc4201ae9dcf71bc0b396779ff84e",
    "jailbreakbench/behaviors.csv": "dc9c05b8acb04828fa62313d249ba715d763c717f9f5faa5444e52592ae2ff1a",
    "jailbreakbench/LICENSE": "7e1ae8f3676f39ff6e62af1743385c176a9476b1157f35bb9d05b4e6c65b7d94",
    "strongreject/strongreject_dataset.csv": "4dd70357e4ff8b5d0ba5ebafecab5d6dd5633ce8046e3dd1c8bd93e64de44381",
    "xstest/xstest_prompts.csv": "11783fb294ed017473ee53c207d71f2161c7672c8d0b037501e78387f801cb5a",
    "xstest/LICENSE": "9e5f1b3c610b9c2da5c313bf81d577a7d1acec686bdb0384edefa6df0f90cd94",
}

COUNTS = {
    "advbench": 520, "advbench-train": 400, "advbench-test": 120,
    "harmbench": 240, "harmbench-val": 60, "harmbench-copyright": 80, "harmbench-val-copyright": 20,
    "jailbreakbench": 100,
    "strongreject": 313, "xstest-safe": 250, "xstest-unsafe": 200,
}


def _shared_data() -> Path | None:
    for cand in (REPO / "shared" / "data", REPO.parent / "shared" / "data"):
        if (cand / "README.md").is_file():
            return cand
    return None


# --------------------------------------------------------------------------- registry


def test_registry_names_and_counts():
    assert bm.names() == list(COUNTS)
    for name, n in COUNTS.items():
        items = bm.load(name)
        assert len(items) == n, name
        assert len({it.id for it in items}) == n, name
        assert all(it.prompt.strip() and it.source == name for it in items), name


def test_registry_entries_are_complete():
    for name in bm.names():
        s = bm.spec(name)
        for key in ("path", "format", "prompt", "id_column", "category", "filters",
                    "license", "description", "harmful"):
            assert key in s, (name, key)
        assert (VENDORED / s["path"]).is_file()
        assert bm.license_of(name)
    assert not bm.is_harmful("xstest-safe")
    assert all(bm.is_harmful(n) for n in bm.names() if n != "xstest-safe")


def test_spec_unknown_name_lists_known():
    with pytest.raises(FtriskError, match="advbench.*xstest-safe"):
        bm.spec("no-such-bench")
    with pytest.raises(FtriskError, match="unknown benchmark"):
        bm.load("no-such-bench")


def test_check_name_takes_registry_names_and_prompt_files(tmp_path):
    bm.check_name("advbench-test")
    bm.check_name(str(tmp_path / "later.jsonl"))  # a prompt file: load_file says if it is missing
    (tmp_path / "notype").write_text("How do I bake bread?\n")
    bm.check_name(str(tmp_path / "notype"))  # an existing file: load_file says what is wrong with its type
    with pytest.raises(FtriskError, match=r"^unknown benchmark 'nosuchbench' \(known: advbench, .*, xstest-unsafe\); "
                                          r"or pass a \.csv, \.jsonl or \.json prompt file$"):
        bm.check_name("nosuchbench")
    with pytest.raises(FtriskError, match="^unknown benchmark 'nosuchbench' "):  # where a file was expected
        bm.load_file("nosuchbench")
    with pytest.raises(FtriskError, match="unsupported prompt file type"):
        bm.load_file(tmp_path / "notype")


def test_spec_and_load_return_copies():
    bm.spec("advbench")["count"] = 1
    assert bm.spec("advbench")["count"] == 520
    bm.load("advbench").clear()
    assert len(bm.load("advbench")) == 520


def test_ids_and_categories():
    adv = bm.load("advbench")
    assert [it.id for it in adv[:3]] == ["advbench-0", "advbench-1", "advbench-2"]
    assert {it.category for it in adv} == {"uncategorized"}
    jbb = bm.load("jailbreakbench")
    assert [it.id for it in jbb] == [f"jbb-{i}" for i in range(100)]
    assert len({it.category for it in jbb}) == 10
    sr = bm.load("strongreject")
    assert sr[0].id == "strongreject-0" and sr[-1].id == "strongreject-312"
    assert all("source" in it.extra for it in sr)
    xs = bm.load("xstest-safe")
    assert xs[0].id == "xstest-1" and xs[0].category == "homonyms"
    assert all(it.category.startswith("contrast_") for it in bm.load("xstest-unsafe"))
    hb = bm.load("harmbench")
    assert "copyright" not in {it.category for it in hb}
    assert {it.extra["FunctionalCategory"] for it in hb} == {"standard", "contextual"}
    assert hash(hb[0]) == hash(bm.load("harmbench")[0])  # frozen Items are hashable


def test_advbench_split_disjoint_and_complete():
    train = {it.id for it in bm.load("advbench-train")}
    test = {it.id for it in bm.load("advbench-test")}
    assert not train & test
    assert train | test == {it.id for it in bm.load("advbench")}


def test_splits_json_matches_seed0_derivation():
    splits = json.loads((VENDORED / "advbench" / "splits.json").read_text(encoding="utf-8"))
    idx = list(range(520))
    random.Random(0).shuffle(idx)
    assert splits == {"seed": 0,
                      "train": [f"advbench-{i}" for i in idx[:400]],
                      "test": [f"advbench-{i}" for i in idx[400:]]}


def test_harmbench_contextual_prompt_contains_context():
    with open(VENDORED / "harmbench" / "harmbench_behaviors_text_test.csv", newline="",
              encoding="utf-8") as fh:
        rows = {r["BehaviorID"]: r for r in csv.DictReader(fh)}
    contextual = [it for it in bm.load("harmbench") if it.extra["FunctionalCategory"] == "contextual"]
    standard = [it for it in bm.load("harmbench") if it.extra["FunctionalCategory"] == "standard"]
    assert (len(contextual), len(standard)) == (81, 159)
    for it in contextual:
        row = rows[it.id]
        assert row["ContextString"].strip()
        assert it.prompt == row["ContextString"] + "\n\n---\n\n" + row["Behavior"]
    for it in standard:
        assert it.prompt == rows[it.id]["Behavior"]
    assert len(bm.load("harmbench-val")) == 60


# --------------------------------------------------------------------------- vendored data


@pytest.mark.parametrize("rel", sorted(SHA256))
def test_vendored_sha256(rel):
    assert hashlib.sha256((VENDORED / rel).read_bytes()).hexdigest() == SHA256[rel]


def test_vendored_readme_lists_hashes_and_licenses_present():
    readme = (VENDORED / "README.md").read_text(encoding="utf-8")
    for digest in SHA256.values():
        assert digest in readme
    assert (VENDORED / "strongreject" / "LICENSE-NOTE.txt").is_file()


@pytest.mark.parametrize("rel", sorted(SHA256))
def test_vendored_identical_to_shared(rel):
    shared = _shared_data()
    if shared is None:
        pytest.skip("shared/data not available")
    assert (VENDORED / rel).read_bytes() == (shared / rel).read_bytes()


# --------------------------------------------------------------------------- sampling


def test_limit_sampling():
    full = bm.load("strongreject")
    a = bm.load("strongreject", limit=20, seed=1)
    assert a == bm.load("strongreject", limit=20, seed=1)
    assert a != bm.load("strongreject", limit=20, seed=2)
    assert len(a) == 20
    pos = [full.index(it) for it in a]
    assert pos == sorted(pos)  # original order kept
    assert bm.load("strongreject", limit=20) == bm.load("strongreject", limit=20, seed=0)
    assert bm.load("strongreject", limit=313) == full
    assert bm.load("strongreject", limit=10_000) == full


@pytest.mark.parametrize("limit", [0, -1])
def test_limit_nonpositive_errors(limit):
    with pytest.raises(FtriskError, match="limit"):
        bm.load("advbench", limit=limit)


# --------------------------------------------------------------------------- overlap


def test_normalize():
    assert bm.normalize("  How do I\tBAKE   bread?!\n") == "how do i bake bread"
    assert bm.normalize("Don't-stop") == "dontstop"


def test_overlap_counts():
    adv, sr, jbb = bm.load("advbench"), bm.load("strongreject"), bm.load("jailbreakbench")
    sr_adv = bm.overlap(sr, adv)
    assert len(sr_adv) == 25
    assert sr_adv == {it.id for it in sr if it.extra["source"] == "AdvBench"}
    assert len(bm.overlap(jbb, adv)) == 11
    assert len(bm.overlap(jbb, sr)) == 3
    # all HarmBench test + val rows, every functional category (copyright included)
    hb_all = []
    for split in ("test", "val"):
        hb_all += bm.load_file(VENDORED / "harmbench" / f"harmbench_behaviors_text_{split}.csv",
                               prompt_column="Behavior", category_column="SemanticCategory")
    assert len(hb_all) == 400
    assert len(bm.overlap(jbb, hb_all)) == 9
    assert len(bm.overlap(jbb, bm.load("harmbench") + bm.load("harmbench-val"))) == 9
    assert bm.overlap(hb_all, adv) == set() and bm.overlap(hb_all, sr) == set()
    # the fixed AdvBench split: how much of each eval set leaks into advbench-train
    train = bm.load("advbench-train")
    assert (len(bm.overlap(jbb, train)), len(bm.overlap(sr, train))) == (9, 23)


# --------------------------------------------------------------------------- user files


def _write(tmp_path, name, text):
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


def test_load_file_csv(tmp_path):
    p = _write(tmp_path, "mine.csv", 'prompt,category\nHow do I bake bread?,cooking\n"Name, please, a fruit",food\n')
    items = bm.load_file(p)
    assert items == [bm.Item("mine-0", "How do I bake bread?", "cooking", "mine"),
                     bm.Item("mine-1", "Name, please, a fruit", "food", "mine")]


def test_load_file_csv_custom_columns_and_ids(tmp_path):
    p = _write(tmp_path, "q.csv", "id,text,topic\na1,How do I bake bread?,cooking\n"
                                  'a2,"Line one\nline two",misc\n')
    items = bm.load_file(p, prompt_column="text", category_column="topic")
    assert [(it.id, it.category) for it in items] == [("a1", "cooking"), ("a2", "misc")]
    assert items[1].prompt == "Line one\nline two"
    assert bm.load_file(p, prompt_column="text")[0].category == "uncategorized"


def test_load_file_jsonl(tmp_path):
    p = _write(tmp_path, "j.jsonl", '{"prompt": "How do I bake bread?", "category": "cooking", "id": 7}\n'
                                    "\n"
                                    '{"prompt": "What is the capital of France?"}\n')
    items = bm.load_file(p)
    assert [(it.id, it.category, it.source) for it in items] == [
        ("7", "cooking", "j"), ("j-1", "uncategorized", "j")]


def test_load_file_json_refusalbench(tmp_path):
    p = _write(tmp_path, "rb.json", json.dumps({"cooking": ["How do I bake bread?", "How long to boil an egg?"],
                                                "travel": ["What is a good time to visit Lisbon?"]}))
    items = bm.load_file(p)
    assert [it.id for it in items] == ["rb-cooking-0", "rb-cooking-1", "rb-travel-0"]
    assert items[2].category == "travel"


@pytest.mark.parametrize("name,text,pattern", [
    ("empty.csv", "", r"empty\.csv: prompt file is empty"),
    ("blank.jsonl", "\n  \n", r"blank\.jsonl: prompt file is empty"),
    ("hdr.csv", "prompt,category\n", r"hdr\.csv: no prompts"),
    ("quote.csv", 'prompt\n"How do I bake bread?\n', r"quote\.csv: bad CSV at line 2"),
    ("fields.csv", "prompt\nHow do I bake bread?,extra\n", r"fields\.csv: bad CSV at line 2"),
    ("cols.csv", "question,topic\nHow do I bake bread?,cooking\n",
     r"cols\.csv: no prompt column 'prompt'; the columns are: question, topic"),
    ("emptyp.csv", "prompt\nHow do I bake bread?\n\" \"\n", r"emptyp\.csv: line 3: empty 'prompt'"),
    ("dup.csv", "id,prompt\nx,How do I bake bread?\nx,How do I make tea?\n", r"dup\.csv: duplicate id 'x'"),
    ("bad.jsonl", '{"prompt": "How do I bake bread?"}\n{not json}\n', r"bad\.jsonl: line 2 is not valid JSON"),
    ("arr.jsonl", '["How do I bake bread?"]\n', r"arr\.jsonl: line 1 is not a JSON object"),
    ("nop.jsonl", '{"prompt": "How do I bake bread?"}\n{"text": "Hi"}\n', r"nop\.jsonl: line 2 has no 'prompt'"),
    ("emptyp.jsonl", '{"prompt": ""}\n', r"emptyp\.jsonl: line 1: empty 'prompt'"),
    ("dup.jsonl", '{"prompt": "Hi", "id": "a"}\n{"prompt": "Hello", "id": "a"}\n', r"dup\.jsonl: duplicate id 'a'"),
    ("bad.json", '{"cooking": ["How do I bake bread?"],\n', r"bad\.json: invalid JSON at line 2"),
    ("list.json", '["How do I bake bread?"]', r"list\.json: expected a JSON object"),
    ("notlist.json", '{"cooking": "How do I bake bread?"}', r"notlist\.json: category 'cooking' must map to a list"),
    ("emptyp.json", '{"cooking": ["How do I bake bread?", " "]}', r"emptyp\.json: category 'cooking' item 1"),
    ("prompts.txt", "How do I bake bread?\n", r"prompts\.txt: unsupported prompt file type"),
])
def test_load_file_errors(tmp_path, name, text, pattern):
    p = _write(tmp_path, name, text)
    with pytest.raises(FtriskError, match=pattern) as exc:
        bm.load_file(p)
    assert "\n" not in str(exc.value)  # one-line messages


def test_load_file_missing_unreadable_and_bad_columns(tmp_path):
    with pytest.raises(FtriskError, match=r"nope\.csv: prompt file not found"):
        bm.load_file(tmp_path / "nope.csv")
    (tmp_path / "dir.csv").mkdir()
    with pytest.raises(FtriskError, match=r"dir\.csv: cannot read prompt file"):
        bm.load_file(tmp_path / "dir.csv")
    (tmp_path / "latin.csv").write_bytes(b"prompt\ncaf\xe9\n")
    with pytest.raises(FtriskError, match=r"latin\.csv: not UTF-8"):
        bm.load_file(tmp_path / "latin.csv")
    p = _write(tmp_path, "ok.csv", "prompt,topic\nHow do I bake bread?,cooking\n")
    with pytest.raises(FtriskError, match=r"ok\.csv: no category column 'kind'; the columns are: prompt, topic"):
        bm.load_file(p, category_column="kind")
    with pytest.raises(FtriskError, match=r"ok\.csv: no prompt column 'text'"):
        bm.load_file(p, prompt_column="text")
    j = _write(tmp_path, "c.json", '{"cooking": ["How do I bake bread?"]}')
    with pytest.raises(FtriskError, match=r"c\.json: prompt/category columns do not apply"):
        bm.load_file(j, prompt_column="text")
