import os

__version__ = "1.0"


def greet(text: str) -> str:
    return f"{os.environ.get('GREETING', 'Hi')} from greeter {__version__}: {text}"
