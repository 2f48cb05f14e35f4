"""A tiny random Llama + a byte-level BPE tokenizer, saved offline: the BIGRec base model of the tests."""

import torch


def save_tiny_llama(folder, titles) -> str:
    """Train a 400-token BPE on BIGRec's prompt text and ``titles``, save it and a 2-layer random Llama to ``folder``.

    Returns:
        ``str(folder)``, loadable by ``BIGRecConfig(base_model_name_or_path=...)`` without a network.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    from genrec.models.bigrec.prompts import PROMPT_TEMPLATE, format_response

    backend = Tokenizer(models.BPE(unk_token=None))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=["<pad>", "</s>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    backend.train_from_iterator([PROMPT_TEMPLATE] + [format_response(t) for t in titles] * 5, trainer)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="<pad>", eos_token="</s>")
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                         pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
                         bos_token_id=tokenizer.eos_token_id, initializer_range=0.3)  # wide lm_head: learnable
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)


def tiny_bigrec(folder, item_ids, titles, **overrides):
    """An untrained BIGRec (LoRA r=4) over :func:`save_tiny_llama`'s folder with the given catalog."""
    from genrec.models.bigrec import BIGRecConfig, BIGRecForCausalLM

    torch.manual_seed(0)
    config = BIGRecConfig(base_model_name_or_path=str(folder), lora_r=4, lora_alpha=8, lora_dropout=0.0,
                          max_new_tokens=12, **{"num_beams": 2, **overrides})
    model = BIGRecForCausalLM(config)
    model.set_catalog(list(item_ids), titles=list(titles))
    return model
