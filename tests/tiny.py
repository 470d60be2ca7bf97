"""Tiny random-weight models and datasets built in code: the tests need no Hub and no downloads."""

from __future__ import annotations

from pathlib import Path

import datasets
from transformers import BertConfig, BertForSequenceClassification, BertModel, BertTokenizerFast

WORDS = ("good great fine fun love best bad awful dull boring worst hate movie film plot actor story the a is "
         "was not very really quite").split()
POSITIVE, NEGATIVE = WORDS[:6], WORDS[6:12]


def make_tokenizer(folder: Path) -> BertTokenizerFast:
    folder.mkdir(parents=True, exist_ok=True)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]
    # transformers 5's BertTokenizerFast ignores vocab_file= (every word became [UNK]); it takes the vocabulary itself
    return BertTokenizerFast(vocab={word: i for i, word in enumerate(vocab)})


def bert_config(hidden: int = 16, layers: int = 1, **kwargs) -> BertConfig:
    vocab_size = len(WORDS) + 5
    return BertConfig(vocab_size=vocab_size, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=2,
                      intermediate_size=2 * hidden, max_position_embeddings=64, **kwargs)


def save_teacher(folder: Path, hidden: int = 12, seed: int = 0) -> Path:
    """A tiny BertModel teacher with its tokenizer, saved like a Hub snapshot."""
    import torch

    torch.manual_seed(seed)
    BertModel(bert_config(hidden)).save_pretrained(folder)
    make_tokenizer(folder).save_pretrained(folder)
    return folder


def save_student(folder: Path, hidden: int = 16, num_labels: int = 2, seed: int = 0, dtype=None) -> Path:
    """A tiny BERT classifier without dropout; `dtype=torch.float64` makes float noise negligible in comparisons."""
    import torch

    torch.manual_seed(seed)
    config = bert_config(hidden, num_labels=num_labels, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    BertForSequenceClassification(config).to(dtype or torch.float32).save_pretrained(folder)
    make_tokenizer(folder).save_pretrained(folder)
    return folder


def sentiment_dataset(n: int = 48, seed: int = 0) -> datasets.Dataset:
    """Short texts whose label is whether they use positive words: learnable in a few steps."""
    import random

    rng = random.Random(seed)
    texts, labels = [], []
    for i in range(n):
        label = i % 2
        words = rng.sample(POSITIVE if label else NEGATIVE, 2) + rng.sample(WORDS[12:], rng.randint(1, 4))
        rng.shuffle(words)
        texts.append(" ".join(words))
        labels.append(label)
    return datasets.Dataset.from_dict({"text": texts, "label": labels})


# ---- images ----
IMAGE_SIZE = 16  # the tiny processors resize every image to this


def vision_config(kind: str, **kwargs):
    """A tiny random config of one vision family: vit (token sequence + pooler), convnext, resnet, mobilenet_v2."""
    from transformers import ConvNextConfig, MobileNetV2Config, ResNetConfig, ViTConfig

    if kind == "vit":
        return ViTConfig(image_size=IMAGE_SIZE, patch_size=8, hidden_size=12, num_hidden_layers=1,
                         num_attention_heads=2, intermediate_size=24, hidden_dropout_prob=0.0, **kwargs)
    if kind == "convnext":
        return ConvNextConfig(patch_size=4, hidden_sizes=[8, 16], depths=[1, 1], num_stages=2, **kwargs)
    if kind == "resnet":
        return ResNetConfig(embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], layer_type="basic", **kwargs)
    if kind == "mobilenet_v2":
        return MobileNetV2Config(image_size=IMAGE_SIZE, depth_multiplier=0.25, min_depth=4, finegrained_output=False,
                                 **kwargs)
    raise ValueError(kind)


def image_processor():
    from transformers import ViTImageProcessor

    return ViTImageProcessor(size={"height": IMAGE_SIZE, "width": IMAGE_SIZE})


def save_image_teacher(folder: Path, kind: str = "convnext", seed: int = 0, classifier: bool = False) -> Path:
    """A tiny random vision backbone (`AutoModel`) with its image processor; `classifier=True` saves the
    ...ForImageClassification instead (a ViT saved that way has no pooler weights)."""
    import torch
    from transformers import AutoModel, AutoModelForImageClassification

    torch.manual_seed(seed)
    auto = AutoModelForImageClassification if classifier else AutoModel
    auto.from_config(vision_config(kind)).save_pretrained(folder)
    image_processor().save_pretrained(folder)
    return folder


def save_image_student(folder: Path, kind: str = "vit", num_labels: int = 2, seed: int = 0) -> Path:
    import torch
    from transformers import AutoModelForImageClassification

    torch.manual_seed(seed)
    AutoModelForImageClassification.from_config(vision_config(kind, num_labels=num_labels)).save_pretrained(folder)
    image_processor().save_pretrained(folder)
    return folder


def image_arrays(n: int = 24, seed: int = 0, size: int = 12):
    """Noisy grey squares whose label is which half (top 0 / bottom 1) is bright: learnable in a few steps."""
    import numpy as np

    rng = np.random.default_rng(seed)
    images, labels = [], []
    for i in range(n):
        label = i % 2
        image = rng.integers(0, 60, (size, size), dtype=np.uint8)
        rows = slice(size // 2, size) if label else slice(0, size // 2)
        image[rows] += 150
        images.append(image)
        labels.append(label)
    return images, labels


def image_dataset(n: int = 24, seed: int = 0) -> datasets.Dataset:
    """The images as a datasets `Image` column (decoded to PIL on access), with an int label."""
    from PIL import Image

    images, labels = image_arrays(n, seed)
    features = datasets.Features({"image": datasets.Image(), "label": datasets.Value("int64")})
    return datasets.Dataset.from_dict({"image": [Image.fromarray(a) for a in images], "label": labels},
                                      features=features)


# ---- decoder LLM teachers ----
def word_tokenizer(padding_side: str = "right"):
    """A word-level tokenizer with an eos token and no pad token (as decoder tokenizers usually come)."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {word: i for i, word in enumerate(["<unk>", "<eos>", *WORDS])}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="<unk>", eos_token="<eos>",
                                   padding_side=padding_side)


def save_decoder_teacher(folder: Path, kind: str = "gpt2", padding_side: str = "right", seed: int = 0) -> Path:
    """A tiny random GPT-2 or LLaMA decoder (`AutoModel`), its tokenizer saved with `padding_side`."""
    import torch
    from transformers import GPT2Config, GPT2Model, LlamaConfig, LlamaModel

    vocab_size = len(WORDS) + 2
    torch.manual_seed(seed)
    if kind == "gpt2":
        model = GPT2Model(GPT2Config(vocab_size=vocab_size, n_embd=12, n_layer=2, n_head=2, n_positions=64,
                                     bos_token_id=1, eos_token_id=1))
    else:
        model = LlamaModel(LlamaConfig(vocab_size=vocab_size, hidden_size=12, intermediate_size=24,
                                       num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1,
                                       max_position_embeddings=64, bos_token_id=1, eos_token_id=1))
    model.save_pretrained(folder)
    word_tokenizer(padding_side).save_pretrained(folder)
    return folder


def save_gguf_teacher(path: Path, seed: int = 0, hidden: int = 8, layers: int = 1) -> Path:
    """A tiny random LLaMA-architecture decoder with a byte-level BPE tokenizer, written as one GGUF file (the layout
    llama.cpp writes; float32 tensors)."""
    import gguf
    import numpy as np
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    rng = np.random.default_rng(seed)
    tokens = [*bytes_to_unicode().values(), "go", "od", "<|endoftext|>"]
    merges = ["g o", "o d"]
    ffn, heads = 2 * hidden, 2

    def weight(*shape):
        return (rng.standard_normal(shape) * 0.2).astype(np.float32)

    path.parent.mkdir(parents=True, exist_ok=True)
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_name("tiny-llama")
    writer.add_context_length(64)
    writer.add_embedding_length(hidden)
    writer.add_block_count(layers)
    writer.add_feed_forward_length(ffn)
    writer.add_head_count(heads)
    writer.add_head_count_kv(heads)
    writer.add_rope_dimension_count(hidden // heads)
    writer.add_rope_freq_base(10000.0)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_tokenizer_model("gpt2")
    writer.add_token_list(tokens)
    writer.add_token_merges(merges)
    writer.add_eos_token_id(len(tokens) - 1)
    writer.add_bos_token_id(len(tokens) - 1)
    writer.add_tensor("token_embd.weight", weight(len(tokens), hidden))
    for i in range(layers):
        for name, shape in (("attn_q", (hidden, hidden)), ("attn_k", (hidden, hidden)), ("attn_v", (hidden, hidden)),
                            ("attn_output", (hidden, hidden)), ("ffn_gate", (ffn, hidden)), ("ffn_up", (ffn, hidden)),
                            ("ffn_down", (hidden, ffn))):
            writer.add_tensor(f"blk.{i}.{name}.weight", weight(*shape))
        writer.add_tensor(f"blk.{i}.attn_norm.weight", np.ones(hidden, np.float32))
        writer.add_tensor(f"blk.{i}.ffn_norm.weight", np.ones(hidden, np.float32))
    writer.add_tensor("output_norm.weight", np.ones(hidden, np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def assert_readable_like_config(folder):
    """The weights get the mode every other new file gets (safetensors 0.8 alone writes them 0600)."""
    weights = list(folder.glob("*.safetensors"))
    assert weights and {w.stat().st_mode for w in weights} == {(folder / "config.json").stat().st_mode}


def save_sentiment_files(folder: Path, suffix: str = "csv") -> Path:
    """`folder/labelled/{train,test}.SUFFIX` (16 and 8 rows) and an unlabelled `folder/pool.SUFFIX` (8 rows, text
    only), as csv or JSON lines."""
    def save(dataset: datasets.Dataset, path: Path) -> None:
        dataset.to_csv(path) if suffix == "csv" else dataset.to_json(path)

    for split, n, seed in (("train", 16, 0), ("test", 8, 1)):
        save(sentiment_dataset(n, seed=seed), folder / "labelled" / f"{split}.{suffix}")
    save(sentiment_dataset(8, seed=2).remove_columns("label"), folder / f"pool.{suffix}")
    return folder


def error_line(capsys) -> str:
    """The one `hf-aft: error:` line a refused command printed on stderr (asserts there is exactly one)."""
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("hf-aft: error:")]
    assert len(lines) == 1, lines
    return lines[0]
