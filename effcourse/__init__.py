"""effcourse: helpers for a hands-on course on efficient neural networks with TensorFlow.

``import effcourse`` first, before TensorFlow: it selects Keras 2 (tf_keras), which the
TensorFlow Model Optimization Toolkit needs. Then, in every notebook::

    import effcourse
    from effcourse import keras, data, models, measure, results, plots, checks
    profile = effcourse.setup()

``effcourse.keras`` is the Keras to use everywhere in the course (tf_keras, Keras 2).
"""

from .env import setup  # noqa: F401  (settles Keras 2 mode on import)
from . import env

env._check_keras2()

import tf_keras as keras  # noqa: E402

from . import checks, data, measure, models, plots, profile, results, train, convert  # noqa: E402,F401

__version__ = "0.1.0"
__all__ = "setup keras env profile data models train measure convert results plots checks".split()
