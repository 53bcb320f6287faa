"""Schedules, the epsilon loss, DDIM/DDPM sampling and the diffusion generator APIs.

The samplers are checked against denoisers whose optimum is known in closed form (a point
mass, a Gaussian, a finite training set); the APIs against a tiny UNet trained here for a few
hundred steps on two classes of toy images (horizontal vs vertical bars).
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from pe_jax import checkpoints
from pe_jax.apis import Generator
from pe_jax.apis.diffusion import DiffusionGenerator, DiffusionSamples
from pe_jax.diffusion import ddim_sample, ddpm_sample, epsilon_loss, make_schedule
from pe_jax.diffusion.schedules import respaced_timesteps
from pe_jax.models.unet import UNetConfig, init_unet

SCHEDULE = make_schedule("cosine", 1000)


# --- analytic denoisers: the exact E[eps | x_t] for known data distributions -------------

class _Analytic:
    """``model(x, t, labels)`` for data drawn from ``points`` (one row each, equally likely).

    The posterior mean of x0 given x_t is a softmax-weighted average of the points, which is
    what a perfectly trained network on that data set would predict.
    """

    def __init__(self, points, schedule=SCHEDULE):
        self.points = jnp.asarray(points, jnp.float32)
        self.schedule = schedule

    def __call__(self, x, t, labels=None, **_):
        a = self.schedule.alphas_cumprod[t][:, None]
        flat = x.reshape(x.shape[0], -1)
        sq = jnp.sum((flat[:, None, :] - jnp.sqrt(a)[:, None] * self.points[None]) ** 2, -1)
        weights = jax.nn.softmax(-sq / (2 * (1 - a)), axis=-1)
        x0 = weights @ self.points
        return ((flat - jnp.sqrt(a) * x0) / jnp.sqrt(1 - a)).reshape(x.shape)


def _gaussian(mean, std, schedule=SCHEDULE):
    """The exact noise predictor for data ~ N(mean, std^2) in every pixel."""
    def model(x, t, labels=None, **_):
        a = schedule.alphas_cumprod[t][:, None, None, None]
        return jnp.sqrt(1 - a) * (x - jnp.sqrt(a) * mean) / (a * std**2 + 1 - a)
    return model


# --- schedules ---------------------------------------------------------------------------

def test_linear_schedule_is_ddpms():
    ab = np.asarray(make_schedule("linear", 1000).alphas_cumprod)
    assert ab.dtype == np.float32 and ab.shape == (1000,)
    np.testing.assert_allclose(ab[0], 1 - 1e-4, rtol=1e-7)
    np.testing.assert_allclose(ab[-1], 4.036e-5, rtol=1e-3)  # DDPM's final alpha_bar
    assert np.all(np.diff(ab) < 0)
    short = np.asarray(make_schedule("linear", 100).alphas_cumprod)
    assert 0 < short[-1] < 1e-4  # rescaled betas: a short schedule still ends near noise


def test_cosine_schedule_follows_its_closed_form():
    ab = np.asarray(SCHEDULE.alphas_cumprod)
    f = np.cos((np.arange(1001) / 1000 + 0.008) / 1.008 * np.pi / 2) ** 2
    np.testing.assert_allclose(ab[:900], f[1:901] / f[0], rtol=1e-5)
    assert np.all(np.diff(ab) < 0) and ab[-1] < 1e-8


def test_respaced_timesteps_are_trailing():
    np.testing.assert_array_equal(respaced_timesteps(1000, 50), np.arange(19, 1000, 20))
    np.testing.assert_array_equal(respaced_timesteps(1000, 3), [332, 666, 999])
    np.testing.assert_array_equal(respaced_timesteps(10, 10), np.arange(10))
    with pytest.raises(ValueError, match="steps"):
        respaced_timesteps(10, 11)


def test_schedule_errors_and_pytree():
    with pytest.raises(ValueError, match="kind"):
        make_schedule("quadratic")
    with pytest.raises(ValueError, match="num_steps"):
        make_schedule("cosine", 1)
    assert float(jax.jit(lambda s: s.alphas_cumprod[0])(SCHEDULE)) == SCHEDULE.alphas_cumprod[0]


# --- loss ----------------------------------------------------------------------------------

class _NoisePeeker:
    """Predicts the exact noise for point-mass data at 0.5, except for "no label" rows."""

    class config:
        num_classes = 3

    def __call__(self, x, t, labels=None, **_):
        exact = _Analytic(jnp.full((1, 1), 0.5))(x, t)
        return jnp.where((labels == self.config.num_classes)[:, None, None, None], 0.0, exact)


@pytest.mark.parametrize("label_dropout", [0.0, 0.3, 1.0])
def test_loss_is_zero_for_the_exact_denoiser_and_drops_labels_at_the_rate(label_dropout):
    images = jnp.full((20_000, 1, 1, 1), 0.5)
    labels = jnp.zeros(20_000, jnp.int32)
    loss = epsilon_loss(_NoisePeeker(), SCHEDULE, jax.random.key(0), images, labels,
                        label_dropout=label_dropout)
    # a dropped label gets prediction 0: squared error E[eps^2] = 1; a kept one: about 0
    assert abs(float(loss) - label_dropout) < 0.05


def test_loss_of_an_unconditional_zero_predictor_is_one():
    loss = epsilon_loss(lambda x, t, labels, **_: jnp.zeros_like(x), SCHEDULE,
                        jax.random.key(1), jnp.zeros((256, 4, 4, 1)), jnp.zeros(256, jnp.int32))
    assert abs(float(loss) - 1.0) < 0.05


# --- samplers --------------------------------------------------------------------------------

def test_ddim_and_ddpm_recover_a_point_mass():
    c = jnp.linspace(-0.9, 0.9, 16)
    model = _Analytic(c[None])
    for images in (ddim_sample(model, SCHEDULE, jax.random.key(0), 8, steps=10, shape=(4, 4, 1)),
                   ddpm_sample(model, SCHEDULE, jax.random.key(1), 8, steps=50, shape=(4, 4, 1))):
        assert images.shape == (8, 4, 4, 1) and images.dtype == jnp.float32
        np.testing.assert_allclose(images.reshape(8, 16), np.tile(c, (8, 1)), atol=1e-3)


@pytest.mark.parametrize("eta, steps", [(0.0, 50), (1.0, 100)])
def test_samples_of_a_gaussian_have_its_mean_and_spread(eta, steps):
    mean, std = 0.2, 0.3
    images = ddim_sample(_gaussian(mean, std), SCHEDULE, jax.random.key(2), 512, steps=steps,
                         eta=eta, shape=(4, 4, 1))
    assert abs(float(images.mean()) - mean) < 0.02
    assert abs(float(images.std()) - std) < 0.02


def test_same_key_same_samples():
    model = _gaussian(0.0, 0.5)
    one, two, other = (ddpm_sample(model, SCHEDULE, jax.random.key(k), 4, steps=20,
                                   shape=(2, 2, 1)) for k in (3, 3, 4))
    np.testing.assert_array_equal(one, two)
    assert not np.allclose(one, other)


@pytest.fixture(scope="module")
def memorised():
    """A denoiser that has memorised 32 points, and those points as images."""
    points = jax.random.uniform(jax.random.key(5), (32, 16), minval=-0.8, maxval=0.8)
    return _Analytic(points), points.reshape(32, 4, 4, 1)


def test_sdedit_distance_grows_with_the_start_step(memorised):
    model, points = memorised
    steps = 20
    sample = jax.jit(lambda s: ddim_sample(model, SCHEDULE, jax.random.key(6), 32, steps=steps,
                                           start_images=points, start_step=s))
    distances = [float(jnp.sqrt(jnp.sum((sample(s) - points) ** 2, (1, 2, 3))).mean())
                 for s in (0, 4, 8, 12, 16, 20)]
    np.testing.assert_array_equal(sample(0), points)
    assert np.all(np.diff(distances) > 0), distances
    assert distances[1] < 0.1 * distances[-1], distances
    # from the last step a sample lands on some memorised point, rarely its own
    eager = ddim_sample(model, SCHEDULE, jax.random.key(6), 32, steps=steps,
                        start_images=points, start_step=steps)
    np.testing.assert_allclose(eager, sample(steps), atol=1e-5)


def test_guidance_mixes_conditional_and_unconditional_predictions(memorised):
    model, points = memorised

    class Conditional:
        """Label k: point mass at point k; "no label" (32): all points."""

        config = UNetConfig(num_classes=32)

        def __call__(self, x, t, labels=None, **_):
            cond = jax.vmap(lambda xi, ti, k: _Analytic(points.reshape(32, 16)[k][None])(
                xi[None], ti[None])[0])(x, t, jnp.minimum(labels, 31))
            return jnp.where((labels == 32)[:, None, None, None], model(x, t), cond)

    labels = jnp.array([0, 1, 2, 3])
    plain = ddim_sample(Conditional(), SCHEDULE, jax.random.key(7), labels, steps=10,
                        shape=(4, 4, 1))
    np.testing.assert_allclose(plain, points[:4], atol=1e-3)
    guided = ddim_sample(Conditional(), SCHEDULE, jax.random.key(7), labels, steps=10,
                         guidance=3.0, shape=(4, 4, 1))
    assert not np.allclose(guided, plain)
    with pytest.raises(ValueError, match="guidance"):
        ddim_sample(Conditional(), SCHEDULE, jax.random.key(7), 4, steps=10, guidance=3.0,
                    shape=(4, 4, 1))


@pytest.mark.parametrize("kwargs, name", [
    (dict(steps=0), "steps"), (dict(steps=1001), "steps"), (dict(eta=1.5), "eta"),
    (dict(start_step=3), "start_step"),
    (dict(start_images=jnp.zeros((2, 4, 4, 1)), start_step=11), "start_step"),
    (dict(start_images=jnp.zeros((2, 4, 4, 1))), "start_step"),
    (dict(start_images=jnp.zeros((3, 4, 4, 1)), start_step=1), "start_images"),
])
def test_sampler_arguments_are_checked(kwargs, name):
    with pytest.raises(ValueError, match=name):
        ddim_sample(_gaussian(0.0, 1.0), SCHEDULE, jax.random.key(0), 2,
                    **({"steps": 10, "shape": (4, 4, 1)} | kwargs))
    with pytest.raises(ValueError, match="labels_or_n"):
        ddim_sample(_gaussian(0.0, 1.0), SCHEDULE, jax.random.key(0), jnp.zeros((2, 2), int))


# --- the generator APIs on a tiny trained UNet ---------------------------------------------

TOY = UNetConfig(resolution=8, channels=1, base_width=16, width_multipliers=(1, 2),
                 blocks_per_level=1, attention_resolutions=(), num_classes=2, norm_groups=8)
TOY_SCHEDULE = {"kind": "cosine", "num_steps": 1000}


def toy_images(key, labels):
    """Class 0: a bright horizontal bar at a random row; class 1: a vertical one; in [-1, 1]."""
    where_key, noise_key = jax.random.split(key)
    position = jax.random.randint(where_key, (labels.size, 1, 1), 0, 7)
    rows, cols = jnp.arange(8)[None, :, None], jnp.arange(8)[None, None, :]
    along = jnp.where(labels[:, None, None] == 0, rows, cols)
    bars = jnp.where((along == position) | (along == position + 1), 0.9, -0.9)
    noise = 0.05 * jax.random.normal(noise_key, bars.shape)
    return jnp.clip(bars + noise, -1, 1)[..., None]


def horizontal(images):
    """Whether each image's rows differ more than its columns (a horizontal bar)."""
    return images.mean(2).std((1, 2)) > images.mean(1).std((1, 2))


@pytest.fixture(scope="module")
def trained():
    """A conditional UNet after 300 AdamW steps on the toy classes."""
    model = init_unet(TOY, seed=0)
    schedule = make_schedule(**TOY_SCHEDULE)
    graphdef, params = nnx.split(model)
    optimizer = optax.adamw(3e-3)

    @jax.jit
    def step(params, opt_state, key):
        data_key, loss_key = jax.random.split(key)
        labels = jax.random.randint(data_key, (64,), 0, 2)
        images = toy_images(data_key, labels)
        loss, grads = jax.value_and_grad(lambda p: epsilon_loss(
            nnx.merge(graphdef, p), schedule, loss_key, images, labels))(params)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    opt_state, losses = optimizer.init(params), []
    for i in range(300):  # a Python loop: XLA:CPU runs this step much slower inside a scan
        params, opt_state, loss = step(params, opt_state, jax.random.key(i))
        losses.append(loss)
    assert float(np.mean(losses[-50:])) < 0.5 * float(np.mean(losses[:10]))
    return nnx.merge(graphdef, params), schedule


@pytest.fixture(scope="module")
def generator(trained):
    return DiffusionGenerator(*trained, steps=10)


def test_random_samples_shapes_dtypes_labels_and_keys(generator):
    assert isinstance(generator, Generator)
    labels = jnp.array([0, 1, 0, 1, 0, 1, 0, 1])
    samples = generator.random(jax.random.key(1), 8, labels)
    assert isinstance(samples, DiffusionSamples)
    images = generator.images(samples)
    assert images.shape == (8, 8, 8, 1) and images.dtype == jnp.float32
    assert float(images.min()) >= 0.0 and float(images.max()) <= 1.0
    np.testing.assert_array_equal(samples.labels, labels)
    np.testing.assert_array_equal(generator.random(jax.random.key(1), 8, labels).images, images)
    assert not np.allclose(generator.random(jax.random.key(2), 8, labels).images, images)
    unlabelled = generator.random(jax.random.key(1), 8)
    np.testing.assert_array_equal(unlabelled.labels, np.full(8, TOY.num_classes))


def test_class_conditioning_changes_samples(trained, generator):
    n = 64
    labels = jnp.arange(n) % 2
    images = generator.random(jax.random.key(3), n, labels).images
    assert float(jnp.mean(horizontal(images) == (labels == 0))) >= 0.85  # measured ~0.95
    flipped = generator.random(jax.random.key(3), n, 1 - labels).images
    assert float(jnp.mean(horizontal(flipped) == (labels == 1))) >= 0.85
    guided = DiffusionGenerator(*trained, steps=10, guidance=2.0)
    images = guided.random(jax.random.key(3), n, labels).images
    assert float(jnp.mean(horizontal(images) == (labels == 0))) >= 0.95  # measured 1.0


def test_variation_distance_grows_with_degree(generator):
    n = 64
    labels = jnp.arange(n) % 2
    start = generator.random(jax.random.key(4), n, labels)
    unchanged = generator.variation(jax.random.key(5), start, 0.0)
    np.testing.assert_array_equal(unchanged.images, start.images)
    np.testing.assert_array_equal(unchanged.labels, start.labels)
    degrees = (0.1, 0.3, 0.5, 0.7, 1.0)
    distances = []
    for degree in degrees:
        varied = generator.variation(jax.random.key(5), start, degree)
        distances.append(float(jnp.sqrt(jnp.sum((varied.images - start.images) ** 2,
                                                (1, 2, 3))).mean()))
    assert np.all(np.diff(distances) > 0), distances
    assert distances[0] < 0.25 * distances[-1], distances


def test_apis_inside_a_larger_jit(generator):
    x = generator.random(jax.random.key(6), 4, jnp.array([0, 1, 0, 1])).images
    eager = generator.variation(jax.random.key(7), x, 0.3)
    assert isinstance(eager, jax.Array) and eager.shape == x.shape  # plain array in, out
    jitted = jax.jit(lambda key: generator.variation(key, x, 0.3))(jax.random.key(7))
    np.testing.assert_allclose(jitted, eager, atol=1e-5)

    def pe_step(key, degree):  # both APIs in one compiled step, the degree traced
        samples = generator.random(key, 4, jnp.array([0, 1, 0, 1]))
        return generator.images(generator.variation(key, samples, degree))
    np.testing.assert_allclose(jax.jit(pe_step)(jax.random.key(8), 0.5),
                               pe_step(jax.random.key(8), 0.5), atol=1e-5)


def test_from_checkpoint_restores_the_generator(trained, generator, tmp_path):
    model, _ = trained
    checkpoints.save(tmp_path / "prior", model,
                     {"unet": TOY.to_dict(), "schedule": TOY_SCHEDULE, "fonts": ["none"],
                      "sampling": {"steps": 10, "guidance": 1.0, "grid": 8}})
    restored = DiffusionGenerator.from_checkpoint(tmp_path / "prior")  # steps from metadata
    labels = jnp.array([1, 0])
    np.testing.assert_array_equal(restored.random(jax.random.key(9), 2, labels).images,
                                  generator.random(jax.random.key(9), 2, labels).images)
    checkpoints.save(tmp_path / "bare", model, {"unet": TOY.to_dict()})
    with pytest.raises(ValueError, match="schedule"):
        DiffusionGenerator.from_checkpoint(tmp_path / "bare")


def test_api_arguments_are_checked(generator):
    x = jnp.zeros((2, 8, 8, 1))
    with pytest.raises(ValueError, match="degree"):
        generator.variation(jax.random.key(0), x, 1.5)
    with pytest.raises(ValueError, match="samples"):
        generator.variation(jax.random.key(0), jnp.zeros((2, 16, 16, 1)), 0.5)
    with pytest.raises(ValueError, match="labels"):
        generator.random(jax.random.key(0), 2, jnp.array([0, 5]))
    with pytest.raises(ValueError, match="labels"):
        generator.random(jax.random.key(0), 2, jnp.array([0]))
    with pytest.raises(ValueError, match="n must"):
        generator.random(jax.random.key(0), 0)
