"""The transformers-local judge backend, on a tiny random Qwen2-VL saved with save_pretrained and loaded back."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from evaluation.rubric.judges import TransformersJudge, make_judge, score_group
from evaluation.rubric.prompts import SYSTEM_PROMPT, Description, user_text
from sara.config import JudgeParams

SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>"]
TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{% if m['content'] is string %}{{ m['content'] }}{% else %}"
    "{% for c in m['content'] %}{% if c['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif c['type'] == 'text' %}{{ c['text'] }}{% endif %}{% endfor %}{% endif %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% if not enable_thinking %}nothink {% endif %}{% endif %}"
)


@pytest.fixture(scope="module")
def tiny_vlm(tmp_path_factory):
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import (PreTrainedTokenizerFast, Qwen2VLConfig, Qwen2VLForConditionalGeneration,
                              Qwen2VLImageProcessor, Qwen2VLProcessor, Qwen2VLVideoProcessor)

    tok = Tokenizer(models.WordLevel(unk_token="<|endoftext|>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.train_from_iterator(['{ } : , " score reason 1 2 3 4 5 nothink system user assistant'], trainers.WordLevelTrainer(special_tokens=SPECIAL))
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                   unk_token="<|endoftext|>", additional_special_tokens=SPECIAL[1:])
    fast.chat_template = TEMPLATE
    proc = Qwen2VLProcessor(image_processor=Qwen2VLImageProcessor(min_pixels=28 * 28 * 4, max_pixels=28 * 28 * 16),
                            tokenizer=fast, video_processor=Qwen2VLVideoProcessor(), chat_template=TEMPLATE)
    ids = {t: fast.convert_tokens_to_ids(t) for t in SPECIAL}
    cfg = Qwen2VLConfig(
        text_config=dict(vocab_size=len(fast), hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                         num_key_value_heads=1, max_position_embeddings=4096, rope_scaling={"type": "mrope", "mrope_section": [2, 2, 4]}),
        vision_config=dict(depth=1, embed_dim=32, hidden_size=32, num_heads=2, patch_size=14, spatial_merge_size=2, temporal_patch_size=2),
        image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"], vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"], eos_token_id=ids["<|im_end|>"], pad_token_id=ids["<|endoftext|>"],
    )
    d = tmp_path_factory.mktemp("tiny_vlm")
    torch.manual_seed(0)  # a fixed random model: its (meaningless) greedy replies are the same on every run
    Qwen2VLForConditionalGeneration(cfg).save_pretrained(d)
    proc.save_pretrained(d)
    return d


def test_local_model_loads_generates_and_unparseable_replies_stay_invalid(tiny_vlm):
    p = JudgeParams(name="tiny", backend="transformers", model=str(tiny_vlm), max_frames=2, max_tokens=16, temperature=0.0, thinking=False)
    judge = make_judge(p, retries=1, backoff_s=0.0)
    assert isinstance(judge, TransformersJudge)
    d = Description("a grey room", "OBJECT_1: red disc", "shot_1: it moves right", 0, 1)
    frames = np.broadcast_to(np.arange(9, dtype=np.uint8)[:, None, None, None] * 20, (9, 56, 56, 3)).copy()  # frame i is grey 20*i
    seen: dict = {}
    template, generate = judge.processor.apply_chat_template, judge.model.generate

    def spy_template(messages, **kw):
        seen["messages"], seen["template_kw"] = messages, kw
        return template(messages, **kw)

    def spy_generate(**kw):
        seen["generate_kw"] = kw
        seen["out"] = generate(**kw)
        return seen["out"]

    judge.processor.apply_chat_template, judge.model.generate = spy_template, spy_generate
    content, _ = judge.reply("TA", d, frames, None)
    # what the model was shown: the system prompt, then max_frames images (first and last frame) and the rubric text
    system, user = seen["messages"]
    assert system["content"][0]["text"] == SYSTEM_PROMPT
    images = [c["image"] for c in user["content"] if c["type"] == "image"]
    assert [np.asarray(im)[0, 0, 0] for im in images] == [0, 160]  # frames 0 and 8 of 9, max_frames = 2
    assert user["content"][-1] == {"type": "text", "text": user_text("TA", d)}
    assert seen["template_kw"]["enable_thinking"] is False
    # how it was asked: greedy, at most max_tokens new tokens, and the reply is exactly those tokens decoded
    assert seen["generate_kw"]["do_sample"] is False and seen["generate_kw"]["max_new_tokens"] == 16
    prompt_len = seen["generate_kw"]["input_ids"].shape[1]
    new = seen["out"][:, prompt_len:]
    assert 1 <= new.shape[1] <= 16
    assert content == judge.processor.batch_decode(new, skip_special_tokens=True)[0]
    assert judge.reply("TA", d, frames, None)[0] == content  # greedy decoding is deterministic
    judge.processor.apply_chat_template, judge.model.generate = template, generate
    r = score_group(judge, "TA", d, frames, None, retries=1)
    assert len(r.attempts) == 2 and all(a["content"] and a["error"] for a in r.attempts)  # both raw replies kept
    assert r.scores == {} and set(r.invalid) == {"entity_count", "person_appearance", "object_appearance",
                                                  "spatial_arrangement", "action_completion", "scene_style"}


def test_missing_local_model_directory_names_the_param(tmp_path):
    p = JudgeParams(name="q", backend="transformers", model=str(tmp_path / "nope"))
    with pytest.raises(FileNotFoundError, match=r"rubric.judges\[q\].model = .* does not exist: it must be a local directory containing a transformers image-text-to-text model"):
        TransformersJudge(p)
