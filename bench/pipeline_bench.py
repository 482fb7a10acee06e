"""Benchmark placeholder: replaced by the real pipeline benchmark."""


def main() -> int:
    print("pipeline benchmark: not written yet")
    return 1
