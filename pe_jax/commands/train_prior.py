"""``pe-jax train-prior``: train a diffusion prior on rendered glyphs (public data only).

``pe-jax train-prior [--config FILE] [--set key=value ...] [--out DIR] [--resume]`` trains the
UNet of ``pe_jax.models.unet`` on glyphs from ``pe_jax.apis.glyphs`` as the config says and
writes to its output folder:

* ``config.json`` (the settings) and ``fonts.json`` (the font files the data was drawn with);
* ``train/``: orbax checkpoints of the whole train state every ``checkpoint_every`` steps, so
  an interrupted run continues with the same command plus ``--resume``;
* ``grids/step_NNNNNN.png``: DDIM samples of the EMA model every ``sample_every`` steps, one
  row per class;
* ``checkpoint/``: the final EMA model as a ``pe_jax.checkpoints`` folder, whose metadata
  holds the UNet config, the noise schedule, the characters, the glyphs' fonts and pose priors
  (with the priors' origin), the training config, the command and the final loss;
  ``DiffusionGenerator.from_checkpoint`` loads it;
* ``samples.png`` (the final grid) and ``training.json`` (losses, steps, wall time).

Without ``--config`` it trains the shipped default prior (``pe_jax/configs/prior_digits8.py``).

``fit_and_save`` is the glyph-free part (build the UNet, train it on any public batches, write
the outputs and the checkpoint's metadata), for priors trained on other public data.
"""

import argparse
import json
import pathlib
import shlex
from typing import TYPE_CHECKING

import ml_collections

from pe_jax._checks import require
from pe_jax.commands import SAMPLES_GRID_FILE, add_config_arguments, output_dir
from pe_jax.configs import CONFIG_DIR, load_config

if TYPE_CHECKING:
    from pe_jax.training import loop

NAME = "train-prior"
HELP = "train a diffusion prior on rendered glyphs (public data) and save it as a checkpoint"
DEFAULT_PRIOR_CONFIG = CONFIG_DIR / "prior_digits8.py"
CHECKPOINT_DIR = "checkpoint"
GRID_COLUMNS = 16


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser, DEFAULT_PRIOR_CONFIG, "the shipped digits prior")
    parser.add_argument("--resume", action="store_true",
                        help="continue an interrupted run in --out from its latest checkpoint")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def execute(args: argparse.Namespace) -> int:
    config = load_config(args.config, args.set)
    require(not args.resume or args.out, "--out", "given with --resume", args.out)
    out = output_dir(args.out, config.name)
    command = ["pe-jax", NAME, "--config", args.config]
    for item in args.set:
        command += ["--set", item]
    summary = train_prior(config, out, resume=args.resume, progress=not args.quiet,
                          command=shlex.join(command + ["--out", str(out)]))
    loss = summary["final_loss"]
    print(f"wrote {out / CHECKPOINT_DIR}: {summary['steps']} steps, final loss "
          f"{'n/a' if loss is None else f'{loss:.4f}'}, {summary['seconds']:.0f} s")
    return 0


def train_prior(config: ml_collections.ConfigDict, out: pathlib.Path, *, resume: bool,
                progress: bool, command: str) -> dict:
    """Trains the prior on glyphs as the config says, writes the outputs above; returns the
    summary."""
    import jax

    from pe_jax.apis.glyphs import GlyphGenerator, describe_priors
    from pe_jax.training import public_data

    generator = GlyphGenerator(characters=config.characters, resolution=config.resolution)
    fonts = [str(p) for p in generator.font_paths]
    _prepare(out, config, fonts, resume)
    data_key = jax.random.split(jax.random.key(config.seed), 3)[0]
    if config.data_size:
        images, labels = public_data.fixed_glyphs(generator, data_key, config.data_size)
        batch_fn = public_data.array_batches(images, labels, config.batch_size, config.channels)
    else:
        batch_fn = public_data.glyph_batches(generator, config.batch_size, config.channels)
    data = {"source": "pe_jax.apis.glyphs (rendered glyphs, public)",
            "fonts": [pathlib.Path(f).name for f in fonts], "font_files": fonts,
            "priors": describe_priors(generator.priors)}
    return fit_and_save(config, out, batch_fn, class_names=list(config.characters), data=data,
                        resume=resume, progress=progress, command=command,
                        metadata={"characters": config.characters})


def fit_and_save(config: ml_collections.ConfigDict, out: pathlib.Path,
                 batch_fn: "loop.BatchFn", *, class_names: list[str], data: dict, resume: bool,
                 progress: bool, command: str, metadata: dict | None = None) -> dict:
    """Trains the UNet the config describes on ``batch_fn``'s public batches and writes
    ``train/``, ``grids/``, ``samples.png``, ``checkpoint/`` and ``training.json`` to ``out``
    (an existing folder, with a ``grids/`` folder).

    The UNet is class-conditional on ``class_names`` when ``config.conditional``, else
    unconditional (``num_classes`` 0). ``data`` describes the public training data in the
    checkpoint's metadata; ``metadata`` adds entries to it. Returns the summary.
    """
    import jax
    import jax.numpy as jnp
    import numpy as np
    from flax import nnx

    from pe_jax import checkpoints, reporting, sharding
    from pe_jax.apis.diffusion import DiffusionGenerator
    from pe_jax.diffusion import make_schedule
    from pe_jax.models.unet import UNet, UNetConfig
    from pe_jax.training import diffusion as training

    unet_config = UNetConfig(
        resolution=config.resolution, channels=config.channels, base_width=config.base_width,
        width_multipliers=tuple(config.width_multipliers),
        blocks_per_level=config.blocks_per_level,
        attention_resolutions=tuple(config.attention_resolutions),
        num_classes=len(class_names) if config.conditional else 0,
        dropout=config.dropout, norm_groups=config.norm_groups, dtype=config.dtype)
    model = UNet(unet_config, rngs=nnx.Rngs(config.seed))
    schedule = make_schedule(config.schedule, config.schedule_steps)
    _, train_key, sample_key = jax.random.split(jax.random.key(config.seed), 3)
    settings = training.TrainSettings(
        steps=config.steps, learning_rate=config.learning_rate,
        warmup_steps=config.warmup_steps, weight_decay=config.weight_decay,
        grad_clip=config.grad_clip, ema_decay=config.ema_decay,
        label_dropout=config.label_dropout, checkpoint_every=config.checkpoint_every,
        log_every=config.log_every)
    mesh = None
    if jax.local_device_count() > 1:  # data parallel over all local devices
        mesh = sharding.local_mesh()
        require(config.batch_size % mesh.size == 0, "batch_size",
                f"a multiple of the device count {mesh.size}", config.batch_size)

    rows = len(class_names) if config.conditional else 8
    grid_labels = np.repeat(np.arange(rows, dtype=np.int32), GRID_COLUMNS)
    graphdef = nnx.graphdef(model)

    def write_grid(path: pathlib.Path, ema: nnx.State) -> None:
        prior = DiffusionGenerator(nnx.merge(graphdef, ema), schedule,
                                   steps=config.sample_steps, guidance=config.guidance)
        samples = prior.random(sample_key, len(grid_labels), jnp.asarray(grid_labels))
        caption = (f"{GRID_COLUMNS} samples of the prior per class; one row per class, "
                   "class 0 on top" if config.conditional else
                   f"{len(grid_labels)} samples of the unconditional prior")
        reporting.save_image_grid(path, np.asarray(samples.images)[..., :1], grid_labels, rows,
                                  GRID_COLUMNS, caption=caption)

    def grid_callback(step: int, state: "loop.TrainState") -> None:
        if step % config.sample_every == 0:
            write_grid(out / "grids" / f"step_{step:06d}.png", state.ema)

    result = training.train(model, schedule, batch_fn, settings, key=train_key,
                            checkpoint_dir=out / "train", resume=resume, mesh=mesh,
                            callbacks=[grid_callback], progress=progress)
    write_grid(out / SAMPLES_GRID_FILE, result.state.ema)
    final_loss = result.losses[-1][1] if result.losses else None
    summary = {"steps": config.steps, "final_loss": final_loss, "seconds": result.seconds,
               "losses": result.losses, "devices": jax.device_count(),
               "backend": jax.default_backend()}
    metadata = {
        "unet": unet_config.to_dict(),
        "schedule": {"kind": config.schedule, "num_steps": config.schedule_steps},
        "sampling": {"steps": config.sample_steps,
                     "guidance": config.guidance if config.conditional else 1.0},
        "class_names": list(class_names),
        "data": data,
        "training": json.loads(config.to_json()),
        "command": command,
        "final_loss": final_loss,
        "steps": config.steps,
        **(metadata or {}),
    }
    checkpoints.save(out / CHECKPOINT_DIR, result.model, metadata)
    (out / "training.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def _prepare(out: pathlib.Path, config: ml_collections.ConfigDict, fonts: list[str],
             resume: bool) -> None:
    """Creates a new output folder, or checks that ``--resume`` continues the same run."""
    from pe_jax import reporting

    settings = json.loads(config.to_json())
    if not resume:
        reporting.prepare_output_dir(out)
        (out / "config.json").write_text(json.dumps(settings, indent=2) + "\n")
        (out / "fonts.json").write_text(json.dumps(fonts, indent=2) + "\n")
        (out / "grids").mkdir()
        return
    require((out / "config.json").is_file(), "--out", "the folder of an earlier train-prior "
            "run (with config.json) when --resume is given", str(out))
    require(json.loads((out / "config.json").read_text()) == settings, "--config/--set",
            "the settings of the run being resumed (its config.json)", "different settings")
    require(json.loads((out / "fonts.json").read_text()) == fonts, "fonts",
            "the fonts of the run being resumed (its fonts.json)", fonts)
    require(not (out / CHECKPOINT_DIR).exists(), "--resume", "a run that has not finished",
            f"{str(out)!r} already holds {CHECKPOINT_DIR}/")
