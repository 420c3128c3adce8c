"""Functions the test models call (module-level, so a function tap can wrap them)."""


def double(x):
    return 2 * x


def halve(x):
    return x / 2


def parts(x):
    return x, x + 1
