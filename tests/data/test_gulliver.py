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
