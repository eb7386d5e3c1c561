"""Helpers of the reliability and security tests (docs/reliability.md): fuzzing, crash consistency,
concurrency and path safety. See docs/reliability.md for what each test promises and how to
run the full counts.
"""
