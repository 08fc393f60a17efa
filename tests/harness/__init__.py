"""Development harness run from a source checkout: fault injection, fuzzing, soak; never installed."""
