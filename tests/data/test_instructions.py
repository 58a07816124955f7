import itertools
import json

import pytest
import torch

from lit_gpt5.data.batching import SFTBatches, collate
from lit_gpt5.data.instructions import SFTDataModule, SFTDataset, read_records
from lit_gpt5.errors import UserError
from lit_gpt5.model.loss import IGNORE_INDEX
from lit_gpt5.model.prompts import format_prompt
from lit_gpt5.model.tokenizer import EOT, get_tokenizer
from tests.helpers import write_jsonl

TOK = get_tokenizer()

RECORDS = [
    {"instruction": "Name the capital of France.", "input": "", "output": "Paris."},
    {"instruction": "Translate to French.", "input": "The little people", "output": "Les petites gens"},
    {"instruction": "Summarise.", "context": "Gulliver is shipwrecked on Lilliput.", "response": "He is shipwrecked."},
    {"prompt": "Say hello in Japanese", "response": "こんにちは 🐍 — naïve “quotes”"},
    {"instruction": "Reply with spaces.", "output": "  leading and trailing  "},
    {"instruction": "Looks special.", "output": "Write <|endoftext|> literally."},
]


def supervised_text(ids: torch.Tensor, labels: torch.Tensor) -> str:
    return TOK.decode(ids[labels != IGNORE_INDEX].tolist())


def expected_response(record: dict) -> str:
    return record.get("output", record.get("response"))


@pytest.mark.parametrize("template", ["alpaca", "plain", "Q: {instruction} {input} A: "])
def test_supervised_tokens_are_exactly_response_and_eot(template):
    ds = SFTDataset(RECORDS, TOK, max_length=512, template=template)
    assert len(ds) == len(RECORDS)
    for record, item in zip(RECORDS, ds, strict=True):
        ids, labels = item["input_ids"], item["labels"]
        assert supervised_text(ids, labels) == expected_response(record) + EOT
        assert ids[-1] == TOK.eot_token and labels[-1] == TOK.eot_token  # <|endoftext|> is supervised
        n_prompt = int((labels == IGNORE_INDEX).sum())
        instruction = record.get("instruction", record.get("prompt"))
        prompt = format_prompt(instruction, record.get("input", record.get("context", "")), template)
        assert ids[:n_prompt].tolist() == TOK.encode_ordinary(prompt)  # prompt tokens never supervised
        assert (labels[:n_prompt] == IGNORE_INDEX).all() and (labels[n_prompt:] != IGNORE_INDEX).all()


def test_prompt_ending_in_a_space_keeps_the_boundary():
    # Joint tokenization would merge " " + "Paris" into " Paris" and blur the mask; separate encoding cannot.
    record = {"instruction": "Capital of France?", "output": "Paris"}
    ds = SFTDataset([record], TOK, 64, template="Q: {instruction} A: ")
    ids, labels = ds.examples[0]
    n_prompt = int((labels == IGNORE_INDEX).sum())
    assert TOK.decode(ids[:n_prompt].tolist()) == "Q: Capital of France? A: "
    assert supervised_text(ids, labels) == "Paris" + EOT


def test_truncation_cuts_the_prompt_from_the_left_and_keeps_the_response():
    long_input = " ".join(["Lilliput"] * 400)
    record = {"instruction": "Which voyage?", "input": long_input, "output": "Part I: A Voyage to Lilliput."}
    ds = SFTDataset([record], TOK, max_length=64, template="plain")
    ids, labels = ds.examples[0]
    assert len(ids) == 64
    assert supervised_text(ids, labels) == record["output"] + EOT
    n_prompt = int((labels == IGNORE_INDEX).sum())
    assert TOK.decode(ids[:n_prompt].tolist()).endswith("### Response:\n")  # the end of the prompt survives
    assert ds.stats.truncated_prompts == 1 and ds.stats.truncated_responses == 0


def test_overlong_response_is_cut_at_its_end_and_empty_examples_are_dropped():
    long_answer = "word " * 100
    ds = SFTDataset(
        [{"instruction": "Talk.", "output": long_answer}, {"prompt": "", "response": ""}], TOK, 32, template="none"
    )
    assert len(ds) == 1 and ds.stats.dropped == 1 and ds.stats.truncated_responses == 1
    ids, labels = ds.examples[0]
    assert len(ids) == 32 and int((labels == IGNORE_INDEX).sum()) >= 1
    assert long_answer.startswith(supervised_text(ids, labels))
    assert "dropped (nothing left to supervise): 1" in ds.stats.table("train")


def test_collate_pads_by_position_never_supervising_padding():
    ds = SFTDataset(RECORDS, TOK, 512, "plain")
    items = [ds[i] for i in range(len(ds))]
    x, y = collate(items)
    width = max(len(e["input_ids"]) for e in items)
    assert x.shape == y.shape == (len(items), width - 1)
    for row, e in enumerate(items):
        n = len(e["input_ids"])
        assert torch.equal(x[row, : n - 1], e["input_ids"][:-1])
        assert torch.equal(y[row, : n - 1], e["labels"][1:])
        assert (y[row, n - 1 :] == IGNORE_INDEX).all()  # padding: never a target, even though its id is EOT
    assert int((y != IGNORE_INDEX).sum()) == sum(int((e["labels"][1:] != IGNORE_INDEX).sum()) for e in items)


def test_bad_records_name_file_line_and_field(tmp_path):
    def check(name: str, content: str, pattern: str) -> None:
        path = tmp_path / name
        path.write_text(content)
        with pytest.raises(UserError, match=pattern):
            read_records(path)

    good = json.dumps({"instruction": "a", "output": "b"})
    check("syntax.jsonl", f'{good}\n{{"instruction": "a",\n', r"syntax.jsonl line 2 column \d+: invalid JSON")
    check("missing.jsonl", f"{good}\n\n{json.dumps({'instruction': 'a'})}\n", r"missing.jsonl line 3: .*no 'output'")
    check("prompt.jsonl", json.dumps({"prompt": "p"}), r"prompt.jsonl line 1: .*'prompt' but no 'response'")
    check("keys.jsonl", json.dumps({"question": "q", "answer": "a"}), r"keys.jsonl line 1: .*it has: answer, question")
    check("type.jsonl", json.dumps({"instruction": "a", "output": 3}), r"type.jsonl line 1: field 'output' must be")
    check(
        "array.json",
        '[\n  {"instruction": "a", "output": "b"},\n  {"instruction": "c"}\n]',
        r"array.json line 3: .*no 'output' \(Alpaca\) or 'response' \(Dolly\)",
    )
    check("broken.json", '[\n  {"instruction": "a", "output": "b"},\n  {"instruction": }\n]', r"broken.json line 3")
    check("empty.jsonl", "\n\n", "holds no records")
    with pytest.raises(UserError, match="does not exist"):
        read_records(tmp_path / "nope.jsonl")
    (tmp_path / "ok.json").write_text(json.dumps([json.loads(good)] * 3))
    assert len(read_records(tmp_path / "ok.json")) == 3


def test_batches_are_deterministic_resumable_distinct_and_bucketed():
    records = [{"instruction": "Repeat.", "output": "word " * n} for n in range(1, 200, 3)]
    ds = SFTDataset(records, TOK, 512, "plain")
    stream = list(itertools.islice(SFTBatches(ds, 4, seed=1), 40))
    again = list(itertools.islice(SFTBatches(ds, 4, seed=1, start_batch=25), 15))
    assert all(torch.equal(a[0], b[0]) for a, b in zip(stream[25:], again, strict=True))
    ranks = [list(itertools.islice(SFTBatches(ds, 4, seed=1, rank=r, world_size=2), 8)) for r in range(2)]
    assert all(torch.equal(ranks[i % 2][i // 2][0], stream[i][0]) for i in range(16))
    # One epoch covers every example once.
    epoch = SFTBatches(ds, 4, seed=1).epoch_batches(0)
    assert sorted(int(i) for b in epoch for i in b) == list(range(len(ds)))

    def padding(bucket: bool) -> int:
        batches = itertools.islice(SFTBatches(ds, 4, seed=1, bucket=bucket), 17)
        return sum(int((y == IGNORE_INDEX).sum()) for _, y in batches)

    assert padding(True) < padding(False) / 3


def test_datamodule_holds_out_by_hash_and_prints_statistics(tmp_path, capsys):
    records = [{"instruction": f"Question {i}?", "output": f"Answer {i}."} for i in range(100)]
    dm = SFTDataModule(train_path=write_jsonl(tmp_path / "d.jsonl", records), val_fraction=0.1, max_length=64)
    dm.setup("fit")
    assert len(dm.train_set) == 90 and len(dm.val_set) == 10
    out = capsys.readouterr().out
    assert "train: 90 examples" in out and "supervised share of tokens" in out and "p90" in out
    shuffled = write_jsonl(tmp_path / "s.jsonl", records[::-1])
    dm2 = SFTDataModule(train_path=shuffled, val_fraction=0.1, max_length=64)
    dm2.setup("fit")
    held = {TOK.decode(ids.tolist()) for ids, _ in dm.val_set.examples}
    assert held == {TOK.decode(ids.tolist()) for ids, _ in dm2.val_set.examples}
