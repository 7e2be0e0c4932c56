def numbers() -> list[int]:
    return list(range(10))
