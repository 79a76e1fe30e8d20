import math

import pytest

from lightning_cnnviz.core.checks import check_choice, check_int, check_key, check_number


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: check_int("window", 0), "`window` must be a positive integer, got 0"),
        (lambda: check_int("window", True), "`window` must be a positive integer, got True"),
        (lambda: check_int("jitter", 65, minimum=0, maximum=64),
         "`jitter` must be an integer in [0, 64], got 65"),
        (lambda: check_int("seed", 1.5, minimum=None), "`seed` must be an integer, got 1.5"),
        (lambda: check_number("alpha", 1.5, low=0, high=1), "`alpha` must be a number in [0, 1]"),
        (lambda: check_number("lr", math.nan, low=0), "`lr` must be a number in [0, inf], got nan"),
        (lambda: check_number("eps", 0.0, low=0, low_open=True),
         "`eps` must be a positive number, got 0.0"),
        (lambda: check_choice("cmap", "jet", ["gray"]),
         "`cmap` must be one of ['gray'], got 'jet'"),
        (lambda: check_key("val_loss_key", ""),
         "`val_loss_key` must be a non-empty string, got ''"),
    ],
)  # fmt: skip
def test_checks_name_the_argument_and_echo_the_value(call, message):
    with pytest.raises(ValueError) as err:
        call()
    assert str(err.value).startswith(message)


def test_checks_accept_valid_values():
    check_int("seed", -3, minimum=None)
    check_int("steps", None, allow_none=True)
    check_number("tolerance", 0.0, low=0.0)
    check_key("output_key", None, allow_none=True)
