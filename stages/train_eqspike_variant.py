"""DVC stage ``train_eqspike_variant``: a second EqSpike model beside the default (claim C5's
comparison; by default the memoryless neuron, g = 1): ``train_eqspike`` with ``variant.leak`` as
the neuron's leak, ``variant.pre_factor`` as the rule's presynaptic factor and ``variant.out`` as
its folders.

    python -m stages.train_eqspike_variant runtime.seed=0
    python -m stages.train_eqspike_variant variant.leak=0.5 variant.pre_factor=trace
"""

from __future__ import annotations

import sys

from stages.common import stage_main
from stages.train_eqspike import variant_config, worker

main = stage_main("train_eqspike_variant", lambda cfg, run: worker(variant_config(cfg), run))

if __name__ == "__main__":
    sys.exit(main())
