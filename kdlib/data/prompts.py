"""GeoChat's prompt texts and its Vicuna-v1 chat format.

Chat format (GeoChat ``conv_vicuna_v1``, ``SeparatorStyle.TWO``, ``sep=" "``, ``sep2=eos``),
used for training with ``--version v1``::

    {SYSTEM} USER: <image>\\n{query_1} ASSISTANT: {answer_1}</s>USER: {query_2} ASSISTANT: {answer_2}</s>

Each turn splits into a *prompt* (everything the model reads, never scored) and a *target*
(`` {answer}</s>``, the only scored tokens). GeoChat's eval scripts default to ``llava_v1``,
whose system line says "human" instead of "user"; kdlib uses the training wording everywhere
(``docs/methods.md`` §3.2).

Query texts (what follows ``<image>\\n``), from GeoChat's ``docs/Evaluation.md`` and eval scripts:

- VQA: ``{question}\\nAnswer the question using a single word or phrase.``
- scene: ``{class list}\\nClassify the image from the following classes. Answer in one word or a
  short phrase.`` The bench's question text is not available (``docs/data.md``); GeoChat
  appends the suffix after the bench question, so kdlib writes the question as the class names in label
  order, spaced and cased exactly as GeoChat-Bench's ``ground_truth`` ("dense residential",
  "Bare Land"), joined by ", ". This is a reconstruction.
- referring: ``[refer] Give me the location of <p> {expression} </p>``
- grounding: ``[grounding]{expression}`` (``batch_geochat_grounding.py`` concatenates, no space)
- region captioning: ``[identify] What is the object present at {box}``
- image captioning (UCM-captions): GeoChat has no UCM caption prompt; kdlib uses
  :data:`CAPTION_QUERY`, its own wording.
"""

from __future__ import annotations

from collections.abc import Sequence

SYSTEM = ("A chat between a curious user and an artificial intelligence assistant. "
          "The assistant gives helpful, detailed, and polite answers to the user's questions.")
IMAGE_TOKEN = "<image>"
DEFAULT_EOS = "</s>"
USER, ASSISTANT = "USER", "ASSISTANT"

VQA_SUFFIX = "Answer the question using a single word or phrase."
SCENE_SUFFIX = "Classify the image from the following classes. Answer in one word or a short phrase."
CAPTION_QUERY = "Describe the image in one sentence."


def vqa_query(question: str) -> str:
    """``{question}\\nAnswer the question using a single word or phrase.``"""
    return f"{question.strip()}\n{VQA_SUFFIX}"


def scene_query(class_names: Sequence[str]) -> str:
    """The class names joined by ``", "``, then the scene suffix on its own line."""
    if not class_names:
        raise ValueError("scene_query needs at least one class name")
    return f"{', '.join(class_names)}\n{SCENE_SUFFIX}"


def refer_query(expression: str) -> str:
    """``[refer] Give me the location of <p> {expression} </p>``"""
    return f"[refer] Give me the location of <p> {expression} </p>"


def grounding_query(expression: str) -> str:
    """``[grounding]{expression}``, as GeoChat's grounding script writes it."""
    return f"[grounding]{expression}"


def identify_query(box: str) -> str:
    """``[identify] What is the object present at {box}``; ``box`` is a ``{<x1><y1><x2><y2>|<t>}`` string."""
    return f"[identify] What is the object present at {box}"


def human_value(query: str) -> str:
    """The first human turn of a GeoChat conversation: ``<image>\\n{query}``."""
    return f"{IMAGE_TOKEN}\n{query}"


def render_turn(human: str, answer: str | None, eos: str = DEFAULT_EOS, first: bool = True) -> tuple[str, str]:
    """One turn as ``(prompt, target)``.

    ``prompt = f"{SYSTEM} USER: {human} ASSISTANT:"`` for the first turn, ``f"USER: {human}
    ASSISTANT:"`` after it; ``target = f" {answer}{eos}"`` ("" when ``answer`` is None, for
    generation). ``human`` already holds ``<image>\\n`` where the turn carries the image.
    """
    head = f"{SYSTEM} " if first else ""
    prompt = f"{head}{USER}: {human} {ASSISTANT}:"
    return prompt, ("" if answer is None else f" {answer}{eos}")


def render_conversation(conversations: Sequence[dict], eos: str = DEFAULT_EOS) -> list[tuple[str, str]]:
    """A GeoChat ``conversations`` list (alternating human / gpt) as one (prompt, target) per turn.

    A trailing human turn without a gpt answer gets the target "" (a generation prompt).
    """
    pairs: list[tuple[str, str]] = []
    for i in range(0, len(conversations), 2):
        human = conversations[i]
        gpt = conversations[i + 1] if i + 1 < len(conversations) else None
        if human.get("from") != "human" or (gpt is not None and gpt.get("from") != "gpt"):
            raise ValueError(f"turn {i // 2}: expected a human message followed by a gpt message")
        pairs.append(render_turn(human["value"], None if gpt is None else gpt["value"], eos, first=i == 0))
    return pairs


def chat_text(query: str, answer: str, eos: str = DEFAULT_EOS) -> str:
    """The whole single-turn training text ``prompt + target`` (used as tokenizer corpus)."""
    prompt, target = render_turn(human_value(query), answer, eos)
    return prompt + target
