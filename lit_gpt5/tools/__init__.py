"""What studies, notebooks and benchmarks call around the package: never imported by the package itself.

==============  ================================================================================================
``studies``     training runs with their TensorBoard logs read back, timings, FLOPs, the bigram baseline
``stats``       a mean with its 95% interval over seeds, paired differences
``machine``     the line that names the machine a figure ran on (``python -m lit_gpt5.tools.machine``)
==============  ================================================================================================
"""
