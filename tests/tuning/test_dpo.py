"""DPO: the loss by hand, a frozen reference, precomputed reference values, masks, accumulation, and the start."""

import math

import pytest
import torch

from lit_gpt5.data.preferences import PreferenceDataModule, PreferenceDataset, collate_pairs, read_pairs
from lit_gpt5.errors import UserError
from lit_gpt5.model.gpt import GPT, GPTConfig
from lit_gpt5.model.loss import IGNORE_INDEX
from lit_gpt5.model.tokenizer import EOT, get_tokenizer
from lit_gpt5.tuning.dpo import DPOLitModule, dpo_loss, sequence_logps
from lit_gpt5.weights.checkpoints import save_checkpoint
from tests.helpers import quiet_trainer, write_jsonl

TOK = get_tokenizer()
PAIRS = [
    {"instruction": "Which voyage is Lilliput in?", "chosen": "Part I.", "rejected": "Part IV, the horses."},
    {"instruction": "Name the flying island.", "input": "Part III", "chosen": "Laputa.", "rejected": "Blefuscu."},
    {"prompt": "Who are the giants? ", "chosen": "The Brobdingnagians.", "rejected": "The Yahoos, of course."},
    {"instruction": "Say it with spaces.", "chosen": "  yes  ", "rejected": "no"},
] * 4


@pytest.fixture(scope="module")
def sft_ckpt(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("sft") / "sft.ckpt"
    save_checkpoint(GPT(GPTConfig.from_name("gpt-nano", n_layer=2, block_size=64)), path)
    return str(path)


def hand_logps(model: GPT, ids: torch.Tensor, labels: torch.Tensor) -> float:
    """log pi(response | prompt), token by token: sum over supervised positions of log softmax(logits)[token]."""
    logits = model(ids[None, :-1])[0].float()
    total = 0.0
    for t in range(len(ids) - 1):
        if labels[t + 1] != IGNORE_INDEX:
            total += torch.log_softmax(logits[t], -1)[ids[t + 1]].item()
    return total


@pytest.mark.parametrize(
    "loss_type,beta,eps",
    [("sigmoid", 0.1, 0.0), ("sigmoid", 0.5, 0.0), ("sigmoid", 0.1, 0.2), ("ipo", 0.1, 0.0), ("ipo", 0.7, 0.0)],
)
def test_loss_equals_a_hand_computation_from_token_log_probs(sft_ckpt, loss_type, beta, eps):
    torch.manual_seed(1)
    policy = GPT(GPTConfig.from_name("gpt-nano", n_layer=2, block_size=64)).eval()
    module = DPOLitModule(init_from=sft_ckpt, beta=beta, loss_type=loss_type, loss_chunk_size=5)
    reference = module.reference_model
    ds = PreferenceDataset(PAIRS[:3], TOK, 64, "plain")
    x, y, index = collate_pairs([ds[i] for i in range(3)])
    for chunk in (0, 5):
        pol, ref = sequence_logps(policy, x, y, chunk), sequence_logps(reference, x, y, chunk)
        losses, chosen, rejected = dpo_loss(pol[:3], pol[3:], ref[:3], ref[3:], beta, loss_type, eps)
        for i in range(3):
            item = ds[i]
            pc = hand_logps(policy, item["chosen_input_ids"], item["chosen_labels"])
            pr = hand_logps(policy, item["rejected_input_ids"], item["rejected_labels"])
            rc = hand_logps(reference, item["chosen_input_ids"], item["chosen_labels"])
            rr = hand_logps(reference, item["rejected_input_ids"], item["rejected_labels"])
            margin = (pc - pr) - (rc - rr)
            # cDPO: the label is right with probability 1 - eps, wrong (chosen and rejected swapped) with eps
            right, wrong = -math.log(1 / (1 + math.exp(-beta * margin))), -math.log(1 / (1 + math.exp(beta * margin)))
            expected = (1 - eps) * right + eps * wrong if loss_type == "sigmoid" else (margin - 1 / (2 * beta)) ** 2
            assert losses[i].item() == pytest.approx(expected, rel=1e-4, abs=1e-5)
            assert chosen[i].item() == pytest.approx(beta * (pc - rc), rel=1e-4, abs=1e-5)
            assert rejected[i].item() == pytest.approx(beta * (pr - rr), rel=1e-4, abs=1e-5)


def test_at_the_start_the_loss_is_log_2_and_every_reward_zero(sft_ckpt):
    module = DPOLitModule(init_from=sft_ckpt)
    ds = PreferenceDataset(PAIRS, TOK, 64, "plain")
    losses, chosen, rejected, _ = module.pair_losses(collate_pairs([ds[i] for i in range(8)]), "train")
    torch.testing.assert_close(losses, torch.full((8,), math.log(2)))
    assert (chosen == 0).all() and (rejected == 0).all()
    # every reward ties, and a tie counts half: the reward accuracy starts at chance, not at 0
    module._update("val", losses, chosen, rejected, torch.zeros(16))
    assert module.eval_metrics("val")["val/rewards/accuracies"] == 0.5


def test_masks_decode_to_exactly_the_responses_and_eos_with_one_shared_prompt():
    ds = PreferenceDataset(PAIRS[:4], TOK, 64, "plain")
    for record, i in zip(PAIRS[:4], range(4), strict=True):
        item = ds[i]
        for side in ("chosen", "rejected"):
            ids, labels = item[f"{side}_input_ids"], item[f"{side}_labels"]
            assert TOK.decode(ids[labels != IGNORE_INDEX].tolist()) == record[side] + EOT
        prompt_c = item["chosen_input_ids"][item["chosen_labels"] == IGNORE_INDEX]
        prompt_r = item["rejected_input_ids"][item["rejected_labels"] == IGNORE_INDEX]
        assert torch.equal(prompt_c, prompt_r)  # both sides: the very same prompt tokens
    long = {"instruction": "Which voyage? " + "word " * 200, "chosen": "Part I.", "rejected": "Part II, the giants."}
    item = PreferenceDataset([long], TOK, 32, "plain")[0]
    assert len(item["rejected_input_ids"]) == 32  # the longer side fits exactly; the prompt lost its start
    assert torch.equal(item["chosen_input_ids"][item["chosen_labels"] == IGNORE_INDEX],
                       item["rejected_input_ids"][item["rejected_labels"] == IGNORE_INDEX])  # fmt: skip


def datamodule(tmp_path, **kwargs) -> PreferenceDataModule:
    path = write_jsonl(tmp_path / "pairs.jsonl", PAIRS)
    return PreferenceDataModule(train_path=path, val_path=path, max_length=64, template="plain", **kwargs)


def test_the_reference_is_frozen_and_precomputed_values_agree(sft_ckpt, tmp_path):
    live = DPOLitModule(init_from=sft_ckpt, learning_rate=1e-2, warmup_steps=0)
    before = {k: v.clone() for k, v in live.reference_model.state_dict().items()}
    trainer = quiet_trainer(max_steps=4, val_check_interval=4, check_val_every_n_epoch=None, limit_val_batches=None)
    trainer.fit(live, datamodule=datamodule(tmp_path, batch_size=4))
    after = live.reference_model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # bitwise unchanged
    assert all(p.grad is None and not p.requires_grad for p in live.reference_model.parameters())
    assert not any(k.startswith("reference") for k in live.state_dict())  # not in checkpoints either
    assert trainer.callback_metrics["val/kl"] > 0  # the policy moved away from the reference

    pre = DPOLitModule(init_from=sft_ckpt, precompute_reference=True)
    assert pre.reference_model is None  # no second model held while training
    dm = datamodule(tmp_path)
    dm.prepare_data()
    pre.trainer = quiet_trainer()  # attached only for its device
    tables = pre.precompute_reference_logps(dm)
    x, y, index = collate_pairs([dm.train_set[i] for i in range(6)])
    on_the_fly = sequence_logps(live.reference_model, x, y, 512)
    torch.testing.assert_close(torch.cat([tables["train"][index, 0], tables["train"][index, 1]]), on_the_fly)


def test_accumulating_4x2_pairs_equals_one_batch_of_8(sft_ckpt, tmp_path):
    from tests.training.test_module import FixedBatches, grads_of_one_step

    ds = PreferenceDataset(PAIRS[:8], TOK, 64, "plain")
    items = [ds[i] for i in range(8)]
    torch.manual_seed(3)
    module = DPOLitModule(init_from=sft_ckpt, warmup_steps=0)
    with torch.no_grad():  # move the policy off the reference, so that the gradients are not all alike
        for p in module.model.parameters():
            p.add_(torch.randn_like(p) * 0.01)
    state = {k: v.clone() for k, v in module.state_dict().items()}
    micro = [collate_pairs(items[i : i + 2]) for i in range(0, 8, 2)]
    accumulated = grads_of_one_step(module, FixedBatches(micro), accumulate=4)
    module.load_state_dict(state)
    whole = grads_of_one_step(module, FixedBatches([collate_pairs(items)]), accumulate=1)
    for a, b in zip(accumulated, whole, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-7)


def test_bad_preference_records_are_named(tmp_path):
    def check(content: str, pattern: str) -> None:
        path = tmp_path / "p.jsonl"
        path.write_text(content)
        with pytest.raises(UserError, match=pattern):
            read_pairs(path)

    check('{"prompt": "p", "chosen": "a"}\n', r"p.jsonl line 1: .*it has no 'rejected' \(it has: chosen, prompt\)")
    check('{"chosen": "a", "rejected": "b"}\n', r"line 1: .*no 'prompt' \(or 'instruction'\)")
    check('{"prompt": "p", "chosen": "a", "rejected": "b"}\n{"prompt": "p", "chosen": 3, "rejected": "b"}\n',
          r"p.jsonl line 2: field 'chosen' must be a string, got int")  # fmt: skip
    check('{"prompt": "p", "chosen": "a", "rejected": "b"}\n{"prompt": \n', r"p.jsonl line 2 column \d+: invalid JSON")
    with pytest.raises(UserError, match="DPO starts from an instruction-tuned model"):
        DPOLitModule()
    with pytest.raises(UserError, match="loss_type must be one of sigmoid, ipo"):
        dpo_loss(torch.zeros(1), torch.zeros(1), torch.zeros(1), torch.zeros(1), loss_type="kto")
    with pytest.raises(UserError, match=r"label_smoothing must be in \[0, 0.5\), got 0.5"):
        dpo_loss(torch.zeros(1), torch.zeros(1), torch.zeros(1), torch.zeros(1), label_smoothing=0.5)
    with pytest.raises(UserError, match="label_smoothing .cDPO. is a variant of the sigmoid loss"):
        dpo_loss(torch.zeros(1), torch.zeros(1), torch.zeros(1), torch.zeros(1), loss_type="ipo", label_smoothing=0.1)


def test_generate_answers_instructions_from_a_dpo_checkpoint(sft_ckpt, tmp_path, capsys):
    from lit_gpt5.commands.generate import main as generate_main

    module = DPOLitModule(init_from=sft_ckpt, warmup_steps=0)
    trainer = quiet_trainer(max_steps=1, limit_val_batches=0)
    trainer.fit(module, datamodule=datamodule(tmp_path, batch_size=2))
    ckpt = tmp_path / "dpo.ckpt"
    trainer.save_checkpoint(ckpt)
    capsys.readouterr()
    generate_main(["--ckpt", str(ckpt), "--instruction", "Name the flying island.", "--temperature", "0",
                   "--max_new_tokens", "5"])  # fmt: skip
    answer = capsys.readouterr().out
    # The policy's own weights, the template the pairs were formatted with ("plain", recorded in the checkpoint).
    from lit_gpt5.model.generate import generate_batch
    from lit_gpt5.model.prompts import format_prompt
    from lit_gpt5.weights.checkpoints import load_checkpoint, tuning_template

    assert tuning_template(ckpt) == "plain"
    prompt = TOK.encode_ordinary(format_prompt("Name the flying island.", "", "plain"))
    expected = generate_batch(load_checkpoint(ckpt), [prompt], 5, temperature=0, stop_token=TOK.eot_token)[0]
    assert answer == TOK.decode(expected) + "\n"


def test_precomputed_values_use_the_trainers_precision(sft_ckpt, tmp_path):
    # Precomputed in bf16 autocast like the policy's own log-probs, so that every reward starts at 0 under bf16-mixed.
    pre = DPOLitModule(init_from=sft_ckpt, precompute_reference=True)
    dm = datamodule(tmp_path)
    dm.prepare_data()
    pre.trainer = quiet_trainer(precision="bf16-mixed")
    tables = pre.precompute_reference_logps(dm)
    x, y, index = collate_pairs([dm.train_set[i] for i in range(len(dm.train_set))])
    reference = DPOLitModule(init_from=sft_ckpt).reference_model
    with torch.autocast("cpu", dtype=torch.bfloat16):
        in_bf16 = sequence_logps(reference, x, y, 512).float()
    precomputed = torch.cat([tables["train"][index, 0], tables["train"][index, 1]])
    in_fp32 = sequence_logps(reference, x, y, 512)
    assert (precomputed - in_bf16).abs().max() < 0.25 * (precomputed - in_fp32).abs().max()
