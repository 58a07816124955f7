"""The machine line every benchmark prints first: ``lit_gpt5.tools.machine``, importable from the scripts here."""

from lit_gpt5.tools.machine import AVX2_EMULATION, describe_machine, kind_of_cpu

__all__ = ["AVX2_EMULATION", "describe_machine", "kind_of_cpu"]

if __name__ == "__main__":
    print(describe_machine()["line"])
