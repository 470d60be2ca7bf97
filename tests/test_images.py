"""Image teachers and students: pooling per architecture, every form of image, the cache, training, the CLI and the
one-line errors for images that aren't."""

import json
from unittest import mock

import datasets
import numpy as np
import pytest
import tiny
import torch
from PIL import Image
from transformers import AutoImageProcessor, AutoModel, AutoModelForImageClassification, ViTImageProcessor

from hf_aft import AFTConfig, AFTError, AFTTrainer, extract_teacher_features, load_labelled_splits, read_teacher_infos
from hf_aft.commands import main
from hf_aft.teachers import ImageTeacher

KINDS = ("vit", "convnext", "resnet", "mobilenet_v2")


@pytest.fixture(scope="module")
def image_teachers(tmp_path_factory):
    root = tmp_path_factory.mktemp("image_teachers")
    teachers = {kind: tiny.save_image_teacher(root / kind, kind, seed=i) for i, kind in enumerate(KINDS)}
    teachers["vit-classifier"] = tiny.save_image_teacher(root / "vit-classifier", "vit", classifier=True)
    return teachers


def reference(folder, images, pooling):
    """One teacher by hand: its own processor, AutoModel, the named pooling."""
    model, processor = AutoModel.from_pretrained(folder).eval(), AutoImageProcessor.from_pretrained(folder)
    with torch.inference_mode():
        out = model(pixel_values=processor(images=[im.convert("RGB") for im in images], return_tensors="pt")[
            "pixel_values"])
    if pooling == "pooler":
        return out.pooler_output.flatten(1).numpy()
    if pooling == "cls":
        return out.last_hidden_state[:, 0].numpy()
    return out.last_hidden_state.mean(1).numpy()


def features_of(dataset):
    return np.asarray(dataset["teacher_features"], dtype=np.float32)


def test_image_teachers_pool_by_architecture_and_concatenate_in_order(image_teachers, tmp_path):
    data = tiny.image_dataset(6)
    names = [*KINDS, "vit-classifier"]
    out = extract_teacher_features(data, [str(image_teachers[k]) for k in names], image_column="image",
                                   batch_size=4, cache_dir=tmp_path)
    infos = read_teacher_infos(out)
    # Every backbone here returns a trained pooler; a ViT saved as a classifier has none, so its CLS token is used.
    assert [i.pooling for i in infos] == ["pooler", "pooler", "pooler", "pooler", "cls"]
    assert [i.name for i in infos] == [str(image_teachers[k]) for k in names]
    assert out["label"] == data["label"] and "image" in out.column_names
    got, start = features_of(out), 0
    for name, info in zip(names, infos, strict=True):
        expected = reference(image_teachers[name], data["image"], info.pooling)
        np.testing.assert_allclose(got[:, start : start + info.dim], expected, atol=1e-5, err_msg=name)
        start += info.dim
    assert start == got.shape[1]


def test_explicit_image_pooling(image_teachers, tmp_path):
    data = tiny.image_dataset(4)
    vit = str(image_teachers["vit"])
    for pooling in ("mean", "cls"):
        out = extract_teacher_features(data, [vit], image_column="image", pooling=pooling, cache_dir=tmp_path)
        np.testing.assert_allclose(features_of(out), reference(vit, data["image"], pooling), atol=1e-5)
    resnet = extract_teacher_features(data, [str(image_teachers["resnet"])], image_column="image", pooling="mean",
                                      cache_dir=tmp_path)
    np.testing.assert_allclose(features_of(resnet), reference_gap(image_teachers["resnet"], data["image"]), atol=1e-5)
    with pytest.raises(AFTError, match="feature map, which has no CLS token"):
        extract_teacher_features(data, [str(image_teachers["resnet"])], image_column="image", pooling="cls",
                                 cache_dir=tmp_path)
    with pytest.raises(AFTError, match="is an image model: teacher_pooling 'last' applies to text only"):
        extract_teacher_features(data, [vit], image_column="image", pooling="last", cache_dir=tmp_path)


def reference_gap(folder, images):
    model, processor = AutoModel.from_pretrained(folder).eval(), AutoImageProcessor.from_pretrained(folder)
    with torch.inference_mode():
        states = model(pixel_values=processor(images=[im.convert("RGB") for im in images], return_tensors="pt")[
            "pixel_values"]).last_hidden_state
    return states.mean((2, 3)).numpy()


def test_pil_images_arrays_and_file_paths_give_the_same_features(image_teachers, tmp_path):
    arrays, labels = tiny.image_arrays(6)
    as_pil = tiny.image_dataset(6)
    as_arrays = datasets.Dataset.from_dict({"image": [a.tolist() for a in arrays], "label": labels})
    as_floats = datasets.Dataset.from_dict({"image": [np.repeat(a[..., None], 3, -1) / 255.0 for a in arrays],
                                            "label": labels})  # [H, W, 3] intensities in [0, 1]
    paths = []
    for i, array in enumerate(arrays):
        Image.fromarray(array).save(tmp_path / f"{i}.png")
        paths.append(str(tmp_path / f"{i}.png"))
    as_paths = datasets.Dataset.from_dict({"image": paths, "label": labels})
    teacher = [str(image_teachers["convnext"])]
    results = [features_of(extract_teacher_features(d, teacher, image_column="image", cache_dir=tmp_path / "cache"))
               for d in (as_pil, as_arrays, as_floats, as_paths)]
    for other in results[1:]:
        np.testing.assert_allclose(other, results[0], atol=1e-6)


def test_second_call_loads_no_image_teacher_and_keeps_the_resolved_pooling(image_teachers, tmp_path):
    data = tiny.image_dataset(6)
    teachers = [str(image_teachers["vit-classifier"]), str(image_teachers["resnet"])]
    first = extract_teacher_features(data, teachers, image_column="image", cache_dir=tmp_path)
    with mock.patch.object(ImageTeacher, "load", side_effect=AssertionError("teacher loaded")):
        again = extract_teacher_features(data, teachers, image_column="image", cache_dir=tmp_path)
    np.testing.assert_array_equal(features_of(first), features_of(again))
    assert read_teacher_infos(again) == read_teacher_infos(first)
    assert [i.pooling for i in read_teacher_infos(again)] == ["cls", "pooler"]
    # New preprocessing settings, same weights: a new revision, so the features are computed again.
    changed = tiny.save_image_teacher(tmp_path / "changed", "resnet")
    before = extract_teacher_features(data, [str(changed)], image_column="image", cache_dir=tmp_path)
    ViTImageProcessor(size={"height": 8, "width": 8}).save_pretrained(changed)
    after = extract_teacher_features(data, [str(changed)], image_column="image", cache_dir=tmp_path)
    assert read_teacher_infos(after)[0].revision != read_teacher_infos(before)[0].revision
    assert not np.allclose(features_of(before), features_of(after))


@pytest.mark.parametrize("kind", KINDS)
def test_image_students_train_with_an_image_teacher(kind, image_teachers, tmp_path):
    student = AutoModelForImageClassification.from_pretrained(tiny.save_image_student(tmp_path / "s", kind))
    args = AFTConfig(output_dir=str(tmp_path / "out"), teachers=[str(image_teachers["convnext"])], max_steps=3,
                     per_device_train_batch_size=8, learning_rate=1e-3, logging_steps=1, report_to="none",
                     use_cpu=True, save_strategy="no")
    trainer = AFTTrainer(model=student, args=args, train_dataset=tiny.image_dataset(16),
                         eval_dataset=tiny.image_dataset(8, seed=1), processing_class=tiny.image_processor(),
                         image_column="image")
    batch = next(iter(trainer.get_train_dataloader()))
    assert batch["pixel_values"].shape == (8, 3, tiny.IMAGE_SIZE, tiny.IMAGE_SIZE)
    assert batch["teacher_features"].shape == (8, 16) and batch["labels"].shape == (8,)
    # The student's features are the head's input, one vector per image, whatever the architecture.
    with torch.no_grad():
        student(pixel_values=batch["pixel_values"])
    features = trainer.feature_capture.pop()
    assert features.shape == (8, trainer.feature_capture.module.in_features)
    trainer.train()
    steps = [log for log in trainer.state.log_history if "transfer_loss" in log]
    assert len(steps) == 3 and all(np.isfinite(log["transfer_loss"]) and log["transfer_loss"] > 0 for log in steps)
    assert 0 <= trainer.evaluate()["eval_loss"] < 10


@pytest.fixture(scope="module")
def image_data(tmp_path_factory):
    """A save_to_disk folder with train and test splits of labelled images (a ClassLabel column)."""
    folder = tmp_path_factory.mktemp("image_data") / "data"
    label = datasets.ClassLabel(names=["top", "bottom"])
    splits = {split: tiny.image_dataset(n, seed).cast_column("label", label)
              for split, n, seed in (("train", 24, 0), ("test", 8, 1))}
    datasets.DatasetDict(splits).save_to_disk(str(folder))
    return folder


def test_cli_trains_an_image_student_and_saves_its_image_processor(image_teachers, image_data, tmp_path):
    student, out = tiny.save_image_student(tmp_path / "student", "vit"), tmp_path / "out"
    argv = ["train", "--model_name_or_path", str(student), "--dataset_name", str(image_data), "--image_column",
            "image", "--teachers", str(image_teachers["mobilenet_v2"]), str(image_teachers["vit"]), "--output_dir",
            str(out), "--per_device_train_batch_size", "8", "--max_steps", "3", "--report_to", "none",
            "--disable_tqdm", "true", "--use_cpu", "true"]
    assert main(argv) == 0
    assert AutoImageProcessor.from_pretrained(out).size == {"height": tiny.IMAGE_SIZE, "width": tiny.IMAGE_SIZE}
    model = AutoModelForImageClassification.from_pretrained(out)
    assert model.config.id2label == {0: "top", 1: "bottom"}
    summary = json.loads((out / "transfer_summary.json").read_text())
    assert [(t["name"], t["pooling"]) for t in summary["teachers"]] == [
        (str(image_teachers["mobilenet_v2"]), "pooler"), (str(image_teachers["vit"]), "pooler")]
    assert 0 <= json.loads((out / "eval_results.json").read_text())["eval_accuracy"] <= 1
    card = (out / "README.md").read_text()  # the card says how to load an image student
    assert "pipeline_tag: image-classification" in card and "AutoModelForImageClassification.from_pretrained" in card


def test_labelled_image_paths_take_a_pool_of_images(image_teachers, tmp_path, capsys):
    """Labelled images as file paths in a csv (image input the docs list) beside a pool of datasets Images: refused
    before as 'the labelled data's holds text'; both are images, so the run trains, and a pool image that is an eval
    image is still found by its pixels."""
    import pandas as pd

    for split, n, seed in (("train", 16, 0), ("test", 8, 1)):
        rows = tiny.image_dataset(n, seed)
        paths = []
        for i, row in enumerate(rows):
            paths.append(str(tmp_path / f"{split}{i}.png"))
            row["image"].save(paths[-1])
        (tmp_path / "csv").mkdir(exist_ok=True)
        pd.DataFrame({"image": paths, "label": rows["label"]}).to_csv(tmp_path / "csv" / f"{split}.csv", index=False)
    pool = tiny.image_dataset(6, seed=5).remove_columns("label")
    datasets.DatasetDict({"train": pool}).save_to_disk(str(tmp_path / "pool"))
    leaky = datasets.concatenate_datasets([pool, tiny.image_dataset(8, seed=1).remove_columns("label").select([3])])
    datasets.DatasetDict({"train": leaky}).save_to_disk(str(tmp_path / "leaky"))
    student = tiny.save_image_student(tmp_path / "student", "vit")
    argv = ["train", "--model_name_or_path", str(student), "--dataset_name", str(tmp_path / "csv"), "--image_column",
            "image", "--teachers", str(image_teachers["vit"]), "--per_device_train_batch_size", "8", "--max_steps",
            "2", "--report_to", "none", "--disable_tqdm", "true", "--use_cpu", "true", "--skip_cost_report", "true"]
    assert main([*argv, "--unlabeled_dataset", str(tmp_path / "pool"), "--output_dir", str(tmp_path / "out")]) == 0
    assert json.loads((tmp_path / "out" / "transfer_summary.json").read_text())["unlabeled_rows"] == 6
    capsys.readouterr()
    assert main([*argv, "--unlabeled_dataset", str(tmp_path / "leaky"), "--output_dir", str(tmp_path / "x")]) == 2
    assert "1 row of the unlabelled" in capsys.readouterr().err
    folder = tmp_path / "pool_folder"  # a folder of image files: the refusal names the file, not only its row
    folder.mkdir()
    for i, image in enumerate(pool["image"]):
        image.save(folder / f"p{i}.png")
    tiny.image_dataset(8, seed=1)[3]["image"].save(folder / "leaked_copy.png")
    assert main([*argv, "--unlabeled_dataset", str(folder), "--output_dir", str(tmp_path / "y")]) == 2
    assert "leaked_copy.png): " in capsys.readouterr().err
    # labelled images in 'img' beside a folder of images ('image', a name the folder cannot change): read as 'img'
    (folder / "leaked_copy.png").unlink()
    (tmp_path / "csv_img").mkdir()
    for split in ("train", "test"):
        pd.read_csv(tmp_path / "csv" / f"{split}.csv").rename(columns={"image": "img"}).to_csv(
            tmp_path / "csv_img" / f"{split}.csv", index=False)
    argv = [str(tmp_path / "csv_img") if a == str(tmp_path / "csv") else "img" if a == "image" else a for a in argv]
    assert main([*argv, "--unlabeled_dataset", str(folder), "--output_dir", str(tmp_path / "z")]) == 0
    assert "image column 'image' is read as 'img', the labelled data's" in capsys.readouterr().out
    assert json.loads((tmp_path / "z" / "transfer_summary.json").read_text())["unlabeled_rows"] == 6


def test_images_that_are_not_images_are_named(image_teachers, tmp_path):
    vit = str(image_teachers["vit"])

    def extract(data, teachers, **kwargs):
        return extract_teacher_features(data, teachers, cache_dir=tmp_path, **kwargs)

    numbers = datasets.Dataset.from_dict({"image": [3, 4], "label": [0, 1]})
    with pytest.raises(AFTError, match=r"column 'image', row 0 holds int 3, not an image"):
        extract(numbers, [vit], image_column="image")
    words = datasets.Dataset.from_dict({"image": ["a cat", "a dog"], "label": [0, 1]})
    with pytest.raises(AFTError, match=r"image column 'image', row 0: 'a cat' is not an image file"):
        extract(words, [vit], image_column="image")
    missing = tiny.image_dataset(3).cast_column("image", datasets.Image(decode=False))
    missing = datasets.Dataset.from_dict({"image": [missing[0]["image"], None, missing[2]["image"]],
                                          "label": [0, 1, 0]}, features=tiny.image_dataset(1).features)
    with pytest.raises(AFTError, match="missing image at row 1"):
        extract(missing, [vit], image_column="image")
    flat = datasets.Dataset.from_dict({"image": [[1, 2, 3], [4, 5, 6]], "label": [0, 1]})
    with pytest.raises(AFTError, match=r"column 'image', row 0: an array of shape \(3,\) is not an image"):
        extract(flat, [vit], image_column="image")
    with pytest.raises(AFTError, match="image column 'picture' not found"):
        extract(tiny.image_dataset(2), [vit], image_column="picture")


def test_tables_of_image_paths_beside_the_images_are_refused_for_what_datasets_would_read(image_teachers, tmp_path,
                                                                                         capsys):
    # CSVs of image paths beside the images: datasets reads the folder as an image folder and leaves the CSVs out.
    root = tmp_path / "data"
    for split, n in (("train", 8), ("test", 4)):
        (root / "files" / split).mkdir(parents=True)
        for i, image in enumerate(tiny.image_dataset(n)["image"]):
            image.save(root / "files" / split / f"{i}.png")
        lines = [f"{root / 'files' / split / f'{i}.png'},{i % 2}" for i in range(n)]
        (root / f"{split}.csv").write_text("image,label\n" + "\n".join(lines) + "\n")
    code = main(["train", "--model_name_or_path", str(tmp_path / "no-student"), "--dataset_name", str(root),
                 "--image_column", "image", "--teachers", str(image_teachers["vit"]), "--output_dir",
                 str(tmp_path / "out"), "--use_cpu", "true"])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err, err
    assert err.count("hf-aft: error:") == 1 and "holds images and 'test.csv' (and 1 more)" in err
    assert "a table of image paths goes in a folder without images" in err
    (tmp_path / "tables").mkdir()
    for split in ("train", "test"):  # the way out: the tables in a folder of their own, the images elsewhere
        (root / f"{split}.csv").rename(tmp_path / "tables" / f"{split}.csv")
    loaded = load_labelled_splits(str(tmp_path / "tables"), input_column="image")
    assert (loaded.train.num_rows, loaded.eval.num_rows, loaded.labels.names) == (8, 4, ["0", "1"])


def test_a_teacher_of_the_wrong_modality_is_named_with_its_column(image_teachers, teacher_dirs, tmp_path):
    vit, bert = str(image_teachers["vit"]), str(teacher_dirs[0])
    images, texts = tiny.image_dataset(2), tiny.sentiment_dataset(2)
    with pytest.raises(AFTError, match=rf"teacher '{bert}' is a text model \(bert\) but column 'image' holds Image"):
        extract_teacher_features(images, [bert], text_column="image", cache_dir=tmp_path)
    with pytest.raises(AFTError, match=rf"teacher '{bert}' is a text model \(bert\) but the dataset has no text "
                                       "column 'text'"):
        extract_teacher_features(images, [vit, bert], image_column="image", cache_dir=tmp_path)
    with pytest.raises(AFTError, match=rf"teacher '{vit}' is an image model \(vit\): it cannot read the text column "
                                       "'text': pass --image_column"):
        extract_teacher_features(texts, [vit], cache_dir=tmp_path)
    with pytest.raises(AFTError, match=r"could not resolve teacher 'no-such-org/vit@no-such-revision'"):
        extract_teacher_features(images, ["no-such-org/vit@no-such-revision"], image_column="image",
                                 cache_dir=tmp_path)


def test_cli_and_trainer_errors_for_image_students(image_teachers, image_data, student_dir, teacher_dirs, tmp_path,
                                                   capsys):
    argv = ["train", "--model_name_or_path", str(student_dir), "--dataset_name", str(image_data), "--image_column",
            "image", "--output_dir", str(tmp_path / "out"), "--transfer", "none", "--report_to", "none"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"hf-aft: error: the student '{student_dir}' is a text model (bert): --image_column") \
        and "\n" not in err
    # an image student given text: it was a tokenizer error ("install sentencepiece") after the teachers ran
    texts = tmp_path / "texts.csv"
    tiny.sentiment_dataset(8).to_csv(texts)
    resnet = tiny.save_image_student(tmp_path / "resnet", "resnet")
    capsys.readouterr()
    argv = ["train", "--model_name_or_path", str(resnet), "--dataset_name", str(texts), "--teachers",
            str(teacher_dirs[0]), "--output_dir", str(tmp_path / "out"), "--report_to", "none"]
    with mock.patch("hf_aft.pipeline.with_pool_features", side_effect=AssertionError("a teacher ran")):
        assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err == (f"hf-aft: error: the student '{resnet}' is an image model (resnet): it cannot read text; pass "
                   "--image_column naming the images, or choose a text student.")
    student = AutoModelForImageClassification.from_pretrained(tiny.save_image_student(tmp_path / "s", "resnet"))
    args = AFTConfig(output_dir=str(tmp_path / "out"), transfer="none", report_to="none", use_cpu=True)
    with pytest.raises(AFTError, match="image_column='image' needs the student's image processor"):
        AFTTrainer(model=student, args=args, train_dataset=tiny.image_dataset(4), image_column="image")


def test_image_features_saved_once_then_a_student_trains_without_teachers(image_teachers, image_data, tmp_path,
                                                                        monkeypatch):
    features = tmp_path / "features"
    assert main(["features", "--teachers", str(image_teachers["resnet"]), "--dataset_name", str(image_data),
                 "--image_column", "image", "--output_dir", str(features)]) == 0
    provenance = json.loads((features / "teachers.json").read_text())
    assert [(t["pooling"], t["dim"]) for t in provenance["teachers"]] == [("pooler", 16)]

    def no_teacher(*args, **kwargs):
        raise AssertionError("training loaded a teacher")

    monkeypatch.setattr(ImageTeacher, "load", no_teacher)
    out = tmp_path / "student"
    assert main(["train", "--model_name_or_path", str(tiny.save_image_student(tmp_path / "s", "convnext")),
                 "--dataset_name", str(features), "--image_column", "image", "--output_dir", str(out),
                 "--per_device_train_batch_size", "8", "--max_steps", "2", "--report_to", "none", "--use_cpu",
                 "true", "--disable_tqdm", "true"]) == 0
    summary = json.loads((out / "transfer_summary.json").read_text())
    assert [t["revision"] for t in summary["teachers"]] == [t["revision"] for t in provenance["teachers"]]


def test_lora_image_student_trains_adapter_and_head_and_reloads_as_its_card_says(image_teachers, tmp_path):
    from peft import LoraConfig, PeftModel

    student_dir = tiny.save_image_student(tmp_path / "student", "vit")
    args = AFTConfig(output_dir=str(tmp_path / "out"), teachers=[str(image_teachers["convnext"])], max_steps=3,
                     per_device_train_batch_size=8, learning_rate=1e-2, beta=1.0, report_to="none", use_cpu=True,
                     save_strategy="no")
    trainer = AFTTrainer(model=AutoModelForImageClassification.from_pretrained(student_dir), args=args,
                         train_dataset=tiny.image_dataset(16), processing_class=tiny.image_processor(),
                         image_column="image", peft_config=LoraConfig(r=4, lora_alpha=8,
                                                                      target_modules=["q_proj", "v_proj"]))
    before = {k: v.detach().clone() for k, v in trainer.model.state_dict().items()}
    trainer.train()
    changed = {k for k, v in trainer.model.state_dict().items() if not torch.equal(before[k], v)}
    assert any("lora_B" in k for k in changed) and any("modules_to_save" in k and "classifier" in k for k in changed)
    assert all("lora_" in k or "modules_to_save" in k for k in changed)  # the base ViT stays as it was
    trainer.save_model()
    trainer.create_model_card()
    out = tmp_path / "out"
    card = (out / "README.md").read_text()
    assert "PeftModel.from_pretrained(base" in card and "AutoModelForImageClassification" in card

    pixels = tiny.image_processor()(images=[im.convert("RGB") for im in tiny.image_dataset(4)["image"]],
                                    return_tensors="pt")["pixel_values"]
    reloaded = PeftModel.from_pretrained(AutoModelForImageClassification.from_pretrained(student_dir), out).eval()
    with torch.no_grad():
        torch.testing.assert_close(reloaded(pixel_values=pixels).logits,
                                   trainer.model.eval()(pixel_values=pixels).logits)


def test_a_resumed_vit_student_continues_exactly_where_it_stopped(image_teachers, image_data, tmp_path, caplog):
    # transformers 5 saves a ViT under its original key names and Trainer's resume loads them as is, which left
    # every weight at its initial value (test accuracy 0.724 -> 0.575 on the vision benchmark); hf-aft reloads them.
    student = tiny.save_image_student(tmp_path / "student", "vit")

    def train(out, *extra):
        assert main(["train", "--model_name_or_path", str(student), "--dataset_name", str(image_data),
                     "--image_column", "image", "--teachers", str(image_teachers["mobilenet_v2"]), "--output_dir",
                     str(out), "--per_device_train_batch_size", "8", "--max_steps", "6", "--learning_rate", "1e-2",
                     "--report_to", "none", "--disable_tqdm", "true", "--use_cpu", "true", "--skip_cost_report",
                     "true", *extra]) == 0
        return AutoModelForImageClassification.from_pretrained(out).state_dict()

    whole = train(tmp_path / "whole", "--save_strategy", "steps", "--save_steps", "3")
    with caplog.at_level("WARNING"):
        resumed = train(tmp_path / "resumed", "--resume_from_checkpoint", str(tmp_path / "whole" / "checkpoint-3"))
    assert all(torch.equal(whole[key], resumed[key]) for key in whole)
    assert [r for r in caplog.records if "names ViTForImageClassification's weights differently" in r.getMessage()]


def test_eval_rows_that_are_training_rows_are_warned_about(caplog, tmp_path):
    """A vision user's test folder held a copy of a training image: the run trained and reported a score that
    counted it as unseen, with no word (pool rows were compared with the eval split, labelled rows were not)."""
    from hf_aft.eval_overlap import say_eval_rows_in_training

    train, other = tiny.image_dataset(6, seed=0), tiny.image_dataset(4, seed=3)
    evaluation = datasets.concatenate_datasets([other, train.select([2])])
    assert say_eval_rows_in_training(train, evaluation, "image") == 1
    assert "1 of the 5 eval rows (first at row 4) are also training rows (the same 'image')" in caplog.text
    caplog.clear()
    assert say_eval_rows_in_training(train, other, "image") == 0 and not caplog.text
    paths = []  # image file paths (a csv): a copy of a training image under another name is found by its pixels
    for i, image in enumerate([*train["image"][:2], train["image"][1]]):
        image.save(path := str(tmp_path / f"{i}.png"))
        paths.append(path)
    as_paths = datasets.Dataset.from_dict({"image": paths[:2]}), datasets.Dataset.from_dict({"image": paths[2:]})
    assert say_eval_rows_in_training(*as_paths, "image", images=True) == 1
    texts = datasets.Dataset.from_dict({"text": ["A fine film", "dull"], "label": [1, 0]})
    assert say_eval_rows_in_training(texts, texts.select([0]).map(lambda r: {"text": " a FINE film "}), "text") == 1


def test_an_unreadable_image_is_named_with_its_split_and_row(image_teachers, tmp_path, capsys):
    """A float array out of [0, 1] (train row 3) and a text that is no image file (in the test split) were refused as
    "column 'image': ..." with no split and no row; the pass that decodes every image (the eval rows compared with
    the training rows) now names both, before any teacher runs."""
    from hf_aft.unlabeled_data import check_no_leakage

    images, labels = tiny.image_arrays(8, 0)
    arrays = [np.asarray(a, dtype=np.float32) * (300.0 if i == 3 else 1 / 255) for i, a in enumerate(images)]
    good = [np.asarray(a, dtype=np.float32) / 255 for a in images]
    floats, texts = tmp_path / "floats", tmp_path / "texts"
    datasets.DatasetDict({"train": datasets.Dataset.from_dict({"image": arrays, "label": labels}),
                          "test": datasets.Dataset.from_dict({"image": good[:4], "label": labels[:4]})}
                         ).save_to_disk(floats)
    png = tmp_path / "a.png"
    Image.fromarray(np.uint8(images[0])).save(png)
    datasets.DatasetDict({"train": datasets.Dataset.from_dict({"image": [str(png)] * 8, "label": labels}),
                          "test": datasets.Dataset.from_dict({"image": [str(png), "x"], "label": labels[:2]})}
                         ).save_to_disk(texts)
    student = tiny.save_image_student(tmp_path / "student", "vit")
    capsys.readouterr()  # the saves' progress bars
    for data, expected in ((floats, "the train split's column 'image', row 3: an array of float64 holds values in"),
                           (texts, "the test split's column 'image', row 1: 'x' is not a readable image file")):
        argv = ["train", "--model_name_or_path", str(student), "--teachers", str(image_teachers["vit"]),
                "--dataset_name", str(data), "--image_column", "image", "--output_dir", str(tmp_path / "out"),
                "--report_to", "none"]
        with mock.patch("hf_aft.pipeline.with_pool_features", side_effect=AssertionError("a teacher ran")):
            assert main(argv) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith(f"hf-aft: error: {expected}"), err
        assert not (tmp_path / "out").exists()
    bad = tmp_path / "bad.png"  # a truncated file, in the split hf-aft features copies (test) and in train
    bad.write_bytes(png.read_bytes()[:40])
    datasets.DatasetDict({"train": datasets.Dataset.from_dict({"image": [str(png)] * 8, "label": labels}),
                          "test": datasets.Dataset.from_dict({"image": [str(png), str(bad)], "label": labels[:2]})}
                         ).save_to_disk(tmp_path / "truncated")
    capsys.readouterr()
    for data in (texts, tmp_path / "truncated"):  # hf-aft features named the row without its split
        assert main(["features", "--teachers", str(image_teachers["vit"]), "--dataset_name", str(data),
                     "--image_column", "image", "--output_dir", str(tmp_path / "features")]) == 2
        assert "the test split's image column 'image', row 1: " in tiny.error_line(capsys)
        assert not (tmp_path / "features").exists()
    pool = datasets.Dataset.from_dict({"image": arrays})  # an unlabelled pool's, in the leakage check
    with pytest.raises(AFTError, match=r"^the unlabelled split's column 'image', row 3: an array of float64"):
        check_no_leakage(pool, datasets.Dataset.from_dict({"image": good[:2]}), "image", "test")
