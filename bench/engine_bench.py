"""Benchmark placeholder: replaced by the real engine benchmark."""


def main() -> int:
    print("engine benchmark: not written yet")
    return 1
