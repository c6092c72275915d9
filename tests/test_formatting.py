"""The one set of formatters (ftrisk.formatting): what each prints, and the switch points every report shares."""

from ftrisk.formatting import DASH, dollars, duration, interval, number, pct, signed


def test_rates_and_intervals():
    assert pct(0.975) == "97.5%" and pct(0.975, 0) == "98%" and pct(None) == DASH
    assert interval(0.9, 0.95) == "[90.0%, 95.0%]" and interval(0.9, 0.95, 0) == "[90%, 95%]"
    assert interval(None, None) == f"[{DASH}, {DASH}]"  # a missing end is a dash, the brackets stay


def test_numbers_and_changes():
    assert number(0.51234) == "0.512" and number(0.5, 2) == "0.50" and number(None) == DASH
    assert signed(0.012) == "+0.012" and signed(-0.0123, 2) == "-0.01" and signed(0.0) == "+0.000"
    assert interval(0.48, 0.54, 3, number) == "[0.480, 0.540]"
    assert interval(-0.05, 0.031, 2, signed) == "[-0.05, +0.03]"


def test_duration_switches_to_minutes_at_a_minute_and_to_hours_at_an_hour():
    assert duration(7.5) == "7.5 s" and duration(59.9) == "59.9 s"  # not "0.1 min" at 6 s
    assert duration(60) == "1.0 min" and duration(3599) == "60.0 min"
    assert duration(3600) == "1.00 h" and duration(None) == "0.0 s"


def test_dollars():
    assert dollars(0.0123) == "$0.012" and dollars(1.5) == "$1.50" and dollars(None) == "$0.000"
    assert dollars(0.0002, 4) == "$0.0002" and dollars(12.34567, 4) == "$12.3457"
