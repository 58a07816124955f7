"""RLOO and the known-reward experiment: the loss by hand, rollouts and their log-probabilities, the frontier's
evaluation, pairs built from a model's own samples, an exact resume, and bad input in one line."""

import json
import math

import pytest
import torch

from lit_gpt5.errors import UserError
from lit_gpt5.model.gpt import GPT, GPTConfig
from lit_gpt5.tuning.rloo import RLOOLitModule, rloo_advantages, rloo_loss
from lit_gpt5.tuning.rollouts import evaluate_policy, rollout_seed, sample_continuations, token_logps
from lit_gpt5.weights.checkpoints import frozen_model, save_checkpoint


def test_rloo_loss_equals_a_hand_computation():
    k = 3
    returns = torch.tensor([0.5, -1.0, 2.0, 0.0, 0.3, 0.3])
    logps = torch.tensor([-10.0, -12.0, -9.0, -11.0, -8.0, -13.0], requires_grad=True)
    losses, advantages = rloo_loss(logps, returns, k)
    for i in range(6):
        group = range(i // k * k, i // k * k + k)
        baseline = sum(returns[j].item() for j in group if j != i) / (k - 1)
        assert advantages[i].item() == pytest.approx(returns[i].item() - baseline)
        assert losses[i].item() == pytest.approx(-(returns[i].item() - baseline) * logps[i].item())
    losses.sum().backward()
    torch.testing.assert_close(logps.grad, -advantages)  # the score function weighted by the advantage, nothing more
    assert advantages.view(2, 3).sum(1).abs().max() < 1e-6  # leave-one-out advantages of a prompt sum to zero
    with pytest.raises(UserError, match="at least 2 samples per prompt"):
        rloo_advantages(returns, 1)


@pytest.fixture(scope="module")
def experiment(shared_dir, tmp_path_factory):
    """A random gpt-nano as the base, and the pairs and prompts `lit-gpt5 reward pairs` builds from its samples."""
    from lit_gpt5.commands.reward import main as reward

    root = tmp_path_factory.mktemp("rloo")
    torch.manual_seed(0)
    save_checkpoint(GPT(GPTConfig.from_name("gpt-nano", n_layer=2, block_size=64)), root / "base.ckpt")
    books = [str(shared_dir / "data" / "gutenberg" / f"{n}-0.txt") for n in (829, 1342, 84)]
    reward(["pairs", "--ckpt", str(root / "base.ckpt"), "--text_paths", *books, "--target", "829-0",
            "--out", str(root / "pairs"), "--train_prompts", "24", "--eval_prompts", "6", "--samples", "3",
            "--max_new_tokens", "8", "--prompt_tokens", "6"])  # fmt: skip
    return root


def prompts_of(root, name="eval_prompts.jsonl"):
    return [json.loads(line)["prompt_ids"] for line in (root / "pairs" / name).read_text().splitlines()]


def test_pairs_are_the_best_and_worst_of_the_models_own_samples(experiment):
    folder = experiment / "pairs"
    assert sorted(p.name for p in folder.iterdir()) == ["eval_prompts.jsonl", "pairs.jsonl", "reward.json",
                                                         "train_prompts.jsonl"]  # fmt: skip
    pairs = [json.loads(line) for line in (folder / "pairs.jsonl").read_text().splitlines()]
    assert 20 <= len(pairs) <= 24 and all(p["chosen_reward"] > p["rejected_reward"] for p in pairs)
    assert {p["book"] for p in pairs} == {"829-0", "1342-0", "84-0"}
    assert all(len(p) == 6 for p in prompts_of(experiment, "train_prompts.jsonl"))
    spec = json.loads((folder / "reward.json").read_text())
    assert spec["target"] == "829-0" and spec["pairs"]["samples"] == 3


def test_token_logps_are_log_softmax_of_each_continuation_token(experiment):
    model = frozen_model(experiment / "base.ckpt")
    prompts = [[464, 3290, 373], [198, 40]]  # of different lengths
    completions = torch.tensor([[11, 262, 286], [13, 383, 257]])
    got = token_logps(model, prompts, completions)
    for row, (prompt, completion) in enumerate(zip(prompts, completions.tolist(), strict=True)):
        ids = torch.tensor(prompt + completion)
        logits = model(ids[None, :-1])[0].float()
        for t, token in enumerate(completion):
            expected = torch.log_softmax(logits[len(prompt) - 1 + t], -1)[token].item()
            assert got[row, t].item() == pytest.approx(expected, abs=1e-4)


def test_the_evaluation_is_deterministic_and_the_reference_is_at_kl_zero(experiment):
    from lit_gpt5.tuning.rewards import load_reward

    model, reward = frozen_model(experiment / "base.ckpt"), load_reward(str(experiment / "pairs" / "reward.json"))
    prompts = prompts_of(experiment)
    first = evaluate_policy(model, model, reward, prompts, samples=2, max_new_tokens=8, seed=3)
    assert first == evaluate_policy(model, model, reward, prompts, samples=2, max_new_tokens=8, seed=3)
    assert first["kl"] == 0.0 and first["samples"] == 12
    assert first["reward"] == pytest.approx(sum(first["rewards"]) / 12)
    other = GPT(GPTConfig.from_name("gpt-nano", n_layer=2, block_size=64)).eval()
    moved = evaluate_policy(other, model, reward, prompts, samples=2, max_new_tokens=8, seed=3)
    assert moved["kl"] > 0.01  # a different policy, its own samples: log pi - log pi_ref > 0 on average
    a = sample_continuations(model, prompts, 2, 8, rollout_seed(1, 2))
    assert torch.equal(a, sample_continuations(model, prompts, 2, 8, rollout_seed(1, 2)))
    assert not torch.equal(a, sample_continuations(model, prompts, 2, 8, rollout_seed(1, 3)))


def test_a_first_rollout_has_zero_kl_and_the_known_rewards(experiment):
    from lit_gpt5.data.rollout_prompts import PromptDataModule

    module = RLOOLitModule(init_from=str(experiment / "base.ckpt"), reward=str(experiment / "pairs" / "reward.json"),
                           max_new_tokens=8)  # fmt: skip
    data = PromptDataModule(train_path=str(experiment / "pairs" / "train_prompts.jsonl"), batch_size=4)
    data.prepare_data()
    batch = data.train_set.collate([data.train_set[i] for i in range(4)])
    policy, scores, kl = module.rollout(batch, 3, seed=11, train=True)
    assert policy.shape == (12, 8) and policy.requires_grad and torch.equal(kl, torch.zeros(12))
    completions = sample_continuations(module.model, [p.tolist() for p in data.train_set.prompts[:4]], 3, 8, 11)
    contexts = torch.tensor([int(data.train_set.prompts[i // 3][-1]) for i in range(12)])
    torch.testing.assert_close(scores, module.known_reward(contexts, completions))


@pytest.mark.slow
def test_a_resumed_rloo_run_is_the_uninterrupted_one(experiment, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from lit_gpt5.cli import main

    folder = experiment / "pairs"

    def fit(root, steps, *extra):
        main(["fit", "--seed_everything=3", "--model=lit_gpt5.tuning.rloo.RLOOLitModule",
              f"--model.init_from={experiment / 'base.ckpt'}", f"--model.reward={folder / 'reward.json'}",
              "--model.max_new_tokens=8", "--model.samples_per_prompt=3", "--model.warmup_steps=1",
              "--model.learning_rate=1e-3", "--model.lr_decay_steps=4",
              "--data=lit_gpt5.data.rollout_prompts.PromptDataModule",
              f"--data.train_path={folder / 'train_prompts.jsonl'}", f"--data.val_path={folder / 'eval_prompts.jsonl'}",
              "--data.batch_size=2", f"--trainer.max_steps={steps}", "--trainer.val_check_interval=2",
              "--trainer.log_every_n_steps=1", "--trainer.accelerator=cpu", "--trainer.enable_progress_bar=false",
              f"--trainer.default_root_dir={root}", "--sampler.max_new_tokens=0",
              "--last_checkpoint.every_n_train_steps=2", *extra])  # fmt: skip
        return root / "lightning_logs"

    whole = fit(tmp_path / "whole", 4)
    part = fit(tmp_path / "part", 2)
    fit(tmp_path / "part", 4, f"--ckpt_path={part / 'version_0' / 'checkpoints' / 'last.ckpt'}")
    a = torch.load(whole / "version_0" / "checkpoints" / "last.ckpt", weights_only=True)
    b = torch.load(part / "version_1" / "checkpoints" / "last.ckpt", weights_only=True)
    assert a["global_step"] == b["global_step"] == 4
    for name, tensor in a["state_dict"].items():
        assert torch.equal(tensor, b["state_dict"][name]), name  # same samples, same updates: bitwise

    def scalars(log_dir, tag):
        acc = EventAccumulator(str(log_dir))
        acc.Reload()
        return {e.step: e.value for e in acc.Scalars(tag)}

    expected = scalars(whole / "version_0", "train/objective/scores")
    got = scalars(part / "version_1", "train/objective/scores")
    assert got and all(got[s] == expected[s] for s in got), (got, expected)
    val = scalars(part / "version_1", "val/objective/kl")
    assert val[4] == scalars(whole / "version_0", "val/objective/kl")[4] and not math.isnan(val[4])


def test_bad_input_is_one_line(experiment, refused, book_path, tmp_path):
    folder, base = experiment / "pairs", str(experiment / "base.ckpt")
    rloo = ["fit", "--model=lit_gpt5.tuning.rloo.RLOOLitModule", f"--model.init_from={base}", "--trainer.max_steps=1"]
    refused([*rloo, f"--data.text_path={book_path}"], r"--model.reward")
    refused([*rloo, f"--model.reward={folder / 'reward.json'}", f"--data.text_path={book_path}"],
            r"RLOOLitModule trains on prompts .* GutenbergDataModule gives tokens")  # fmt: skip
    refused([*rloo, f"--model.reward={folder / 'reward.json'}", "--model.samples_per_prompt=1"],
            r"at least 2 samples per prompt")  # fmt: skip
    prompts = [
        "--data=lit_gpt5.data.rollout_prompts.PromptDataModule",
        f"--data.train_path={folder / 'train_prompts.jsonl'}",
    ]
    refused([*rloo, f"--model.reward={folder / 'reward.json'}", *prompts, "--model.max_new_tokens=60"],
            r"longest prompt \(6 tokens\) and its 60 new ones need more than the model's 64 positions")  # fmt: skip
    bad = tmp_path / "prompts.jsonl"
    bad.write_text('{"prompt_ids": [1, 2]}\n{"prompt_ids": [1, 99999]}\n')
    refused([*rloo, f"--model.reward={folder / 'reward.json'}", "--data=lit_gpt5.data.rollout_prompts.PromptDataModule",
             f"--data.train_path={bad}"], r"prompts.jsonl line 2: 'prompt_ids' must be .* token ids")  # fmt: skip
    pairs = ["reward", "pairs", "--ckpt", base, "--target", "829-0", "--text_paths", str(book_path)]
    refused([*pairs, "--out", str(tmp_path / "a")], r"at least two")
    refused([*pairs, str(book_path.parent / "84-0.txt"), "--out", str(folder)], r"is not empty")
    refused([*pairs, str(book_path.parent / "84-0.txt"), "--out", str(tmp_path / "b"), "--samples", "1"],
            r"--samples must be at least 2")  # fmt: skip
    refused(["reward", "info", "--target", "nope", "--text_paths", str(book_path), str(book_path.parent / "84-0.txt")],
            r"--target 'nope' is not one of the books: 829-0, 84-0")  # fmt: skip
    refused(["reward", "eval", "--ckpt", base, "--reward", str(folder / "pairs.jsonl"), "--prompts",
             str(folder / "eval_prompts.jsonl")], r"pairs.jsonl is not JSON")  # fmt: skip
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
