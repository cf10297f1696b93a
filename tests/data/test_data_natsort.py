"""Natural sort: numeric runs compare as numbers (Magnetic Tile ids are not zero-padded)."""

from anomalyforge.data import natural_key, natural_sorted


def test_numbers_compare_numerically():
    assert natural_key("exp1_num_10181") < natural_key("exp1_num_106151")
    assert natural_key("exp1_num_9") < natural_key("exp1_num_10")
    assert natural_key("exp0_num_743") < natural_key("exp1_num_1")
    assert natural_sorted(["10", "9", "100", "011"]) == ["9", "10", "011", "100"]


def test_order_is_total_and_case_insensitive():
    assert natural_sorted(["B2", "a10", "a2", "7", "007"]) == ["007", "7", "a2", "a10", "B2"]
    assert natural_key("007") != natural_key("7")


def test_plain_string_order_would_differ():
    ids = ["exp1_num_106151", "exp1_num_10181", "exp1_num_2610"]
    assert sorted(ids) != natural_sorted(ids)
    assert natural_sorted(ids) == ["exp1_num_2610", "exp1_num_10181", "exp1_num_106151"]
