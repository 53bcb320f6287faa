"""A public generator of 2-D points for loop tests: cheap, and its geometry is easy to check."""

import jax


class PointGenerator:
    """Public 2-D points in [-4, 4]^2, seen as 1x1 images with two channels."""

    def random(self, key, n, labels):
        return jax.random.uniform(key, (n, 2), minval=-4.0, maxval=4.0)

    def variation(self, key, samples, degree):
        return samples + degree * jax.random.normal(key, samples.shape)

    def images(self, samples):
        return samples[:, None, None, :]
