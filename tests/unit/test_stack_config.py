"""What a local stack may be asked to start: the five functions or some of them, never a
function that does not exist, and the emulated (deployed) shape only whole."""

from __future__ import annotations

import pytest

from functions.local.stack import FUNCTIONS, LocalStack, StackConfig


def test_a_stack_starts_the_functions_it_names_and_the_dispatcher() -> None:
    """A stack asked for some functions runs those and the dispatcher; by default, all five."""
    stack = LocalStack(StackConfig(functions=("ingest", "jobs_api")))
    assert stack.process_names == ["ingest", "jobs_api", "dispatcher"]
    assert LocalStack(StackConfig()).process_names == [*FUNCTIONS, "dispatcher"]


def test_an_unknown_function_is_refused_by_name() -> None:
    """A misspelt function is a ValueError naming it, not a stack short of a function."""
    with pytest.raises(ValueError, match="run_bach"):
        StackConfig(functions=("ingest", "run_bach"))


def test_the_emulated_shape_starts_every_function() -> None:
    """The deployed shape on emulators cannot be started with a function missing."""
    with pytest.raises(ValueError, match="every function"):
        StackConfig(cloud="emulated", functions=("ingest", "run_batch", "jobs_api"))
