"""Device strings and where arrays live."""

from __future__ import annotations

import numpy as np
import pytest

from noodle.devices import ALLOWED, array_device, gpu_count, is_gpu_array, parse_device
from noodle.errors import DeviceError, DeviceUnavailableError


@pytest.mark.parametrize(
    ("spec", "expected"),
    [("cpu", ("cpu", None)), ("CPU", ("cpu", None)), (" cpu ", ("cpu", None)), ("auto", ("auto", None)),
     (None, ("auto", None))],
)
def test_cpu_and_auto_parse_everywhere(spec, expected) -> None:
    assert parse_device(spec) == expected
    assert parse_device(spec) == expected  # second call: the cached path


@pytest.mark.parametrize("spec", ["tpu", "", "cuda:x", "cuda:-1", "cuda:", "gpu0", "cpu:0", 3, 1.5, ["cpu"]])
def test_bad_device_strings_list_what_is_allowed(spec) -> None:
    with pytest.raises(DeviceError) as info:
        parse_device(spec)
    assert not isinstance(info.value, DeviceUnavailableError)
    assert ALLOWED in str(info.value)


def test_a_gpu_index_that_does_not_exist_is_unavailable() -> None:
    with pytest.raises(DeviceUnavailableError) as info:
        parse_device("cuda:99")
    assert "cuda:99" in str(info.value)


# ids avoid a bare "gpu" keyword, which the conftest would take for the gpu marker
@pytest.mark.parametrize("spec", ["gpu", "cuda", "cuda:0", "GPU"], ids=lambda s: f"spec={s}")
def test_gpu_requested_where_none_is_usable_says_why_and_what_to_do(settings_env, spec) -> None:
    settings_env(NOODLE_DISABLE_GPU="1")
    with pytest.raises(DeviceUnavailableError) as info:
        parse_device(spec)
    message = str(info.value)
    assert "NOODLE_DISABLE_GPU" in message and "device='cpu'" in message


def test_gpu_strings_follow_gpu_count(settings_env) -> None:
    settings_env()
    if gpu_count() == 0:
        with pytest.raises(DeviceUnavailableError):
            parse_device("gpu")
    else:
        assert parse_device("gpu") == ("cuda", None)
        assert parse_device("cuda:0") == ("cuda", 0)


def test_numpy_and_python_values_live_on_the_cpu() -> None:
    for value in (np.zeros(3), np.float32(1.0), [1, 2], 3.0, None):
        assert not is_gpu_array(value)
        assert array_device(value) == "cpu"
