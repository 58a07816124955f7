"""Resuming with --ckpt_path honours the --model arguments given with it, and refuses the ones that cannot change."""

import pytest
import torch

from lit_gpt5.__main__ import main
from lit_gpt5.errors import run_main
from lit_gpt5.training.optim import lr_at

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("quiet_lightning")]


def data_args(book_path, root, steps: int) -> list[str]:
    return [
        f"--data.text_path={book_path}",
        "--data.block_size=16",
        "--data.batch_size=4",
        "--data.val_batch_size=1024",
        f"--trainer.max_steps={steps}",
        "--trainer.val_check_interval=1000",
        "--trainer.accelerator=cpu",
        "--trainer.enable_progress_bar=false",
        "--trainer.enable_model_summary=false",
        f"--trainer.default_root_dir={root}",
        "--sampler.max_new_tokens=0",
        "--last_checkpoint.every_n_train_steps=2",
    ]


MODEL = ["--model.model_name=gpt-nano", "--model.n_layer=1", "--model.n_embd=16", "--model.n_head=2"]


def last(root, version: int):
    return root / "lightning_logs" / f"version_{version}" / "checkpoints" / "last.ckpt"


def load(path):
    return torch.load(path, map_location="cpu", weights_only=True)


@pytest.fixture(scope="module")
def trained(book_path, tmp_path_factory):
    """A 4-step run at learning rate 2e-3: runs/lightning_logs/version_0/checkpoints/last.ckpt (step 4)."""
    root = tmp_path_factory.mktemp("runs")
    main(["fit", *MODEL, "--model.learning_rate=2e-3", "--model.warmup_steps=0", *data_args(book_path, root, 4)])
    assert load(last(root, 0))["global_step"] == 4
    return root


def test_a_lower_learning_rate_takes_effect_on_the_restored_optimizer(book_path, trained, tmp_path, capsys):
    root = tmp_path / "runs"
    ckpt = last(trained, 0)
    main(
        [
            "fit",
            f"--ckpt_path={ckpt}",
            "--model.learning_rate=1e-5",
            "--model.min_lr=1e-6",
            *data_args(book_path, root, 8),
        ]
    )
    assert "with changed settings: learning_rate 0.002 -> 1e-05, min_lr 6e-05 -> 1e-06" in capsys.readouterr().out
    resumed = load(last(root, 0))
    assert resumed["global_step"] == 8 and resumed["hyper_parameters"]["learning_rate"] == 1e-5
    assert resumed["lr_schedulers"][0]["base_lrs"] == [1e-5, 1e-5]
    for group in resumed["optimizer_states"][0]["param_groups"]:
        assert group["initial_lr"] == 1e-5
        assert group["lr"] == pytest.approx(lr_at(8, 1e-5, 1e-6, 0, 8))  # the new schedule, at the step reached
    # The architecture came from the checkpoint: no --model.model_name was needed.
    assert resumed["lit_gpt5"]["model_config"] == load(ckpt)["lit_gpt5"]["model_config"]


def test_on_nonfinite_given_on_resume_is_used(book_path, trained, tmp_path, capsys):
    root = tmp_path / "runs"
    main(["fit", f"--ckpt_path={last(trained, 0)}", "--model.on_nonfinite=skip", *data_args(book_path, root, 6)])
    assert "on_nonfinite stop -> skip" in capsys.readouterr().out
    assert load(last(root, 0))["hyper_parameters"]["on_nonfinite"] == "skip"


@pytest.mark.parametrize(
    "arg,pattern",
    [
        ("--model.model_name=gpt-micro", r"--model.model_name gpt-micro conflicts with --ckpt_path .*cannot change"),
        ("--model.n_layer=2", r"--model.n_layer 2 conflicts with --ckpt_path .*n_layer=1, n_head=2, n_embd=16"),
        ("--model.init_from=INIT", r"--model.init_from .* and --ckpt_path .* both set the weights"),
    ],
)
def test_what_cannot_change_is_refused(book_path, trained, refused, workdir, arg, pattern):
    arg = arg.replace("INIT", str(last(trained, 0)))
    refused(["fit", f"--ckpt_path={last(trained, 0)}", arg, *data_args(book_path, workdir / "runs", 6)], pattern)


def test_validate_builds_the_checkpoint_architecture(book_path, trained, tmp_path, capsys):
    main(["validate", f"--ckpt_path={last(trained, 0)}", *data_args(book_path, tmp_path, 4)])  # no --model.* at all
    assert "val/loss" in capsys.readouterr().out


def test_the_advice_after_a_nan_works(book_path, tmp_path, capsys):
    """A NaN at a high learning rate stops the run; resuming with a lower one, as the error says, finishes it."""
    root = tmp_path / "runs"
    nan = ["--trainer.callbacks+=tests.helpers.NaNAboveLR", "--trainer.callbacks.lr=2e-3", "--trainer.callbacks.step=2"]
    args = [*MODEL, "--model.learning_rate=3e-3", "--model.warmup_steps=0", *data_args(book_path, root, 10), *nan]
    with pytest.raises(SystemExit) as exit_:
        run_main(lambda: main(["fit", *args]))
    err = capsys.readouterr().err
    ckpt = last(root, 0)
    assert exit_.value.code == 2
    assert (
        f"error: loss nan at step 2: stopped before the update; the weights before this step are saved to {ckpt}" in err
    )
    assert "resume from it with a lower --model.learning_rate" in err
    assert load(ckpt)["global_step"] == 2
    main(["fit", f"--ckpt_path={ckpt}", "--model.learning_rate=1e-3", *data_args(book_path, root, 10), *nan])
    assert "learning_rate 0.003 -> 0.001" in capsys.readouterr().out
    finished = load(last(root, 1))
    assert finished["global_step"] == 10
    assert all(torch.isfinite(t).all() for t in finished["state_dict"].values())
