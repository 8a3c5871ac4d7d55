"""The configs, one module per method: ``--config=byol[:preset]`` (from any directory) or,
in a checkout, the file ``--config=configs/byol.py[:preset]`` (``configs`` links here).

Each module declares ``PRESETS``, the presets its ``get_config(preset)`` accepts, the default
first; ``python -m cl_jax.main --list`` prints them. The module's docstring describes each
preset, with its source and expected result.
"""
