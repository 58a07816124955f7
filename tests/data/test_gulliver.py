from lit_gpt5.data.gulliver import GulliverInstructDataModule, gulliver_instructions
from lit_gpt5.data.gutenberg import clean_gutenberg


def test_gulliver_instruction_set(book_text, isolated_cache, book_path):
    records = gulliver_instructions(clean_gutenberg(book_text))
    assert records == gulliver_instructions(clean_gutenberg(book_text))  # deterministic
    summaries = [r for r in records if r["instruction"].startswith("Summarise chapter")]
    assert len(summaries) == 8 + 8 + 11 + 12
    assert summaries[0]["output"].startswith("The author gives some account of himself and family.")
    answers = {r["output"] for r in records if r["instruction"].startswith("Which voyage")}
    assert answers == {
        "Part I: A Voyage to Lilliput.",
        "Part II: A Voyage to Brobdingnag.",
        "Part III: A Voyage to Laputa, Balnibarbi, Glubbdubdrib, Luggnagg and Japan.",
        "Part IV: A Voyage to the Country of the Houyhnhnms.",
    }
    assert len(records) > 300
    dm = GulliverInstructDataModule(text_path=str(book_path))
    dm.prepare_data()
    cache = isolated_cache / "local"
    train = (cache / "instructions-train.jsonl").read_text().splitlines()
    val = (cache / "instructions-val.jsonl").read_text().splitlines()
    assert len(val) == round(len(records) * 0.1) and len(train) + len(val) == len(records)


def test_gulliver_preference_pairs(book_text, book_path, tmp_path):
    import json

    from lit_gpt5.commands.sft import main
    from lit_gpt5.data.gulliver import GulliverPreferenceDataModule, gulliver_preferences

    text = clean_gutenberg(book_text)
    pairs = gulliver_preferences(text)
    assert pairs == gulliver_preferences(text)  # deterministic
    assert [(p["instruction"], p.get("input", ""), p["chosen"]) for p in pairs] == [
        (r["instruction"], r.get("input", ""), r["output"]) for r in gulliver_instructions(text)
    ]
    assert all(p["rejected"] != p["chosen"] for p in pairs)
    voyages = [p for p in pairs if p["instruction"].startswith("Which voyage")]
    assert {p["rejected"] for p in voyages} <= {p["chosen"] for p in voyages}  # another part's title
    summaries = [p for p in pairs if p["instruction"].startswith("Summarise")]
    assert {p["rejected"] for p in summaries} <= {p["chosen"] for p in summaries}  # another chapter's synopsis
    # Held out where the instruction set holds out: DPO never trains on a question SFT is evaluated on.
    sft_val = GulliverInstructDataModule(text_path=str(book_path)).load_records()[1]
    dpo_val = GulliverPreferenceDataModule(text_path=str(book_path)).load_records()[1]
    assert {(r["instruction"], r["input"]) for r in sft_val} == {(r["instruction"], r["input"]) for r in dpo_val}
    main(["preferences", "--text_path", str(book_path), "--out", str(tmp_path / "pairs")])
    lines = (tmp_path / "pairs" / "val.jsonl").read_text(encoding="utf-8").splitlines()
    assert len(lines) == len(dpo_val) and set(json.loads(lines[0])) == {"instruction", "input", "chosen", "rejected"}
