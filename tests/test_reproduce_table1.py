"""Table 1 generated from the configs equals the paper's Table 1."""

from __future__ import annotations

from dilightning.reproduce import table1

# Table 1 of Podlaski & Machens (2020), cell by cell. The autoencoder's iterations are the one
# inconsistency of the paper: it lists 1.6 × 10^6, while its 25 epochs of 60 000 images are 1.5 × 10^6.
PAPER = [
    ["Linear regression", "30-20-10", "linear-linear", "2000", "10^-2", "0", "0 (blue); 10^-3 (yellow); 10^-2 (red)"],
    ["Nonlinear regression", "30-20-10-10", "tanh-tanh-linear", "12000", "10^-2", "0",
     "0 (blue); 10^-3 (yellow); 10^-2 (red)"],
    ["MNIST classification", "784-1000-10", "tanh-softmax", "6 × 10^5 (10 epochs)", "10^-3", "10^-6",
     "0 (blue); 10^-2 (yellow)"],
    ["MNIST autoencoding", "784-500-250-30-250-500-784", "tanh-tanh-linear-tanh-tanh-linear",
     "1.5 × 10^6 (25 epochs)", "10^-6", "10^-10", "10^-3 (blue); 10^-2 (yellow)"],
]


def test_generated_table_matches_paper():
    generated = [[row[column] for column in table1.COLUMNS] for row in table1.rows()]

    for ours, paper in zip(generated, PAPER):
        assert ours == paper


def test_markdown_written(tmp_path):
    table1.reproduce(output_dir=tmp_path)

    text = (tmp_path / "table1.md").read_text()
    assert "| MNIST classification | 784-1000-10 | tanh-softmax |" in text


def test_power_of_ten_format():
    assert table1.power_of_ten(0.001) == "10^-3"
    assert table1.power_of_ten(600000) == "6 × 10^5"
    assert table1.power_of_ten(0) == "0"


def test_table1_accepts_every_scale(tmp_path):
    from dilightning.reproduce.__main__ import main as reproduce_main

    assert reproduce_main(["table1", "--scale", "smoke", "--out", str(tmp_path)]) == 0
    assert (tmp_path / "table1.md").is_file()
