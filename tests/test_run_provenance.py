"""What a run treats as public is listed in privacy.json, each item with where it came from."""

import json

from pe_jax import checkpoints, cli
from pe_jax.apis.diffusion import DEFAULT_PRIOR
from pe_jax.apis.glyphs import DEFAULT_PRIORS, DEFAULT_PRIORS_ORIGIN, describe_priors
from pe_jax.configs import CONFIG_DIR
from pe_jax.data import HELDOUT_RULE, HELDOUT_SALT
from pe_jax.models import encoder

SHIPPED_PRIORS = describe_priors(DEFAULT_PRIORS)


def test_shipped_checkpoints_record_the_glyphs_they_were_trained_on():
    encoder_metadata = checkpoints.load_metadata(encoder.SHIPPED)
    assert encoder_metadata["priors"] == SHIPPED_PRIORS and encoder_metadata["fonts"]
    prior_data = checkpoints.load_metadata(DEFAULT_PRIOR)["data"]
    assert prior_data["priors"] == SHIPPED_PRIORS and prior_data["fonts"]
    assert "held-out rows" in SHIPPED_PRIORS["origin"]["description"]


def test_privacy_report_lists_the_public_inputs_and_their_origin(tmp_path):
    out = tmp_path / "run"
    assert cli.main(["run", "--config", str(CONFIG_DIR / "digits_glyphs.py"), "--out", str(out),
                     "--set", "pe.iterations=2",
                     "--set", "pe.samples_per_class=10", "--set", "metrics.names=",
                     "--set", "embedding.name=encoder", "--quiet"]) == 0
    report = json.loads((out / "privacy.json").read_text())
    public = report["public"]
    assert all(isinstance(entry["description"], str) for entry in public.values())
    generator = public["generator"]
    assert generator["name"] == "glyphs" and generator["fonts"]
    assert generator["priors"] == SHIPPED_PRIORS
    assert generator["priors"]["origin"]["heldout_salt"] == HELDOUT_SALT
    assert generator["priors"]["origin"]["reference_rows"] == 462
    embedding = public["embedding"]
    assert embedding["checkpoint"] == str(encoder.SHIPPED)
    assert embedding["command"].startswith("pe-jax train-encoder")
    assert embedding["training_data"]["priors"]["origin"] == DEFAULT_PRIORS_ORIGIN
    heldout = public["heldout_reference"]
    assert (heldout["rows"], heldout["fraction"]) == (462, 0.25)
    assert (heldout["salt"], heldout["rule"]) == (HELDOUT_SALT, HELDOUT_RULE)
    assert "outside the guarantee" in heldout["description"]
    assert report["private_data"]["rows"] == 1335
    config = json.loads((out / "config.json").read_text())
    assert config["generator"]["glyph_priors"] == SHIPPED_PRIORS["values"]
