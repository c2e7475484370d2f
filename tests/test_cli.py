import json

from imgclf.cli import main


def test_summary_prints_the_test_accuracy(tmp_path, capsys):
    metrics = tmp_path / "evaluate.json"
    metrics.write_text(json.dumps({"accuracy": 0.98765, "loss": 0.05, "macro_f1": 0.9876, "test_images": 270}))
    assert main(["summary", "--metrics", str(metrics)]) == 0
    assert capsys.readouterr().out.strip() == ("test accuracy 0.9877 (loss 0.0500, macro F1 0.9876) "
                                               "on 270 test images")


def test_summary_before_any_run_says_what_to_do(tmp_path, capsys):
    main(["summary", "--metrics", str(tmp_path / "missing.json")])
    assert "run `dvc repro` first" in capsys.readouterr().out
