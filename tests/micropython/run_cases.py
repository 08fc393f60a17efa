"""Runs every check_* and acheck_* case of the cases_* modules; prints one line per case and a summary.

Written for MicroPython (the WebAssembly port loads it with `await run_cases.main()`); also runs on CPython.
"""

import sys

MODULES = ("cases_tap", "cases_schedule", "cases_runtime", "cases_micropython")


async def main(only=None, extra=()):
    passed = 0
    failed = 0
    for module_name in tuple(MODULES) + tuple(extra):
        module = __import__(module_name)
        names = sorted([n for n in dir(module) if n.startswith("check_") or n.startswith("acheck_")])
        for name in names:
            if only and only not in name:
                continue
            fn = getattr(module, name)
            try:
                if name.startswith("acheck_"):
                    await fn()
                else:
                    fn()
            except Exception as error:  # report every failure, keep going
                failed += 1
                print(f"FAIL {module_name}.{name}: {type(error).__name__}: {error}")
                if hasattr(sys, "print_exception"):
                    sys.print_exception(error)
                continue
            passed += 1
            print(f"PASS {module_name}.{name}")
    impl = getattr(sys, "implementation", None)
    impl_name = impl.name if impl else "?"
    print(f"IMPL {impl_name} {sys.version}")
    print(f"micropython: {passed} passed, {failed} failed")
    return failed
