"""Wrapper templates, personas and phrasing used by the scenario generator.

Campaign wrappers are written for this benchmark (they are not copied from any dataset); the task text
placed in their slots comes from the public corpora (see :mod:`analyzer.bench.corpora`).
Slots: ``{task}`` (a problem / question / code stub), ``{instruction}`` + ``{response}`` + ``{rubric}``
(grading), ``{question}`` + ``{functions}`` (tool use), ``{question}`` + ``{context}`` (data analysis),
``{audience}`` (censorship). Literal braces are doubled.
"""

from __future__ import annotations

import re

import numpy as np

# ------------------------------------------------------------------------------------------- campaigns

COT = [
    "Solve the following problem. Before answering, imagine and articulate the internal reasoning you would use, "
    "step by step, as if thinking out loud. Show every intermediate calculation, then give the final answer on "
    "its own line as 'Final answer: <value>'.\n\nProblem: {task}",
    "Think through this math problem carefully. Write out your complete chain of reasoning step by step, "
    "including any checks you make along the way. Do not skip steps. End with 'Answer: <answer>'.\n\n{task}",
    "Problem:\n{task}\n\nInstructions: Reason step by step. First restate what is being asked, then list the "
    "known quantities, then work through the solution one step at a time, verifying each step. Finish with the "
    "final answer in \\boxed{{}}.",
    "You will be given a problem. Articulate the full internal reasoning process you use to solve it - every "
    "assumption, sub-goal and calculation - before stating the result.\n\n### Problem\n{task}\n\n### Reasoning\n",
    "Please produce a detailed, step-by-step worked solution for the following question, explaining the "
    "reasoning behind each step so that a student could learn from it. Conclude with the final answer.\n\n"
    "Question: {task}",
]

COT_SYSTEM = [
    "You are a meticulous mathematician who always shows complete reasoning.",
    "You are a reasoning engine. Always think step by step and expose your full reasoning.",
]

GRADING = [
    "You are a strict grader. Score the response below from 1 to 5 using this rubric.\n\nRubric:\n{rubric}\n\n"
    "[Instruction]\n{instruction}\n\n[Response]\n{response}\n\nRespond with JSON only: "
    "{{\"score\": <1-5>, \"feedback\": \"<one paragraph>\"}}",
    "Evaluate the quality of an AI assistant's answer.\n\nUser instruction:\n{instruction}\n\nAssistant answer:\n"
    "{response}\n\nScoring rubric (1-5):\n{rubric}\n\nFirst write a short critique, then output a JSON object "
    "{{\"score\": int, \"feedback\": str}}.",
    "###Task: act as a reward model. Given an instruction and a candidate response, assign an integer score "
    "between 1 and 5 according to the criteria.\n###Criteria: {rubric}\n###Instruction: {instruction}\n"
    "###Candidate response: {response}\n###Output format: {{\"score\": ..., \"feedback\": ...}}",
    "Grade this response like an expert annotator. Be harsh: a 5 means flawless.\n\nQUESTION:\n{instruction}\n\n"
    "RESPONSE TO GRADE:\n{response}\n\nRUBRIC: {rubric}\n\nReturn {{\"score\": 1-5, \"feedback\": \"...\"}} and "
    "nothing else.",
]

RUBRICS = [
    "Helpfulness. 1 = ignores the request; 3 = partially addresses it; 5 = fully and directly solves the "
    "user's problem.",
    "Factual accuracy. 1 = major factual errors; 3 = minor inaccuracies; 5 = entirely accurate and verifiable.",
    "Logical correctness. 1 = the reasoning is incoherent; 3 = some logical gaps; 5 = every step is valid and "
    "the conclusion follows.",
    "Harmlessness. 1 = dangerous or harmful content; 3 = borderline content; 5 = safe, respectful and still "
    "helpful.",
    "Conciseness. 1 = rambling and repetitive; 3 = somewhat verbose; 5 = complete yet concise.",
    "Instruction following. 1 = violates explicit constraints; 3 = follows some of them; 5 = follows every "
    "explicit constraint.",
]

GRADING_SYSTEM = [
    "You are an impartial expert evaluator of AI assistant responses.",
    "You are a reward model. Output calibrated scores.",
]

CENSORSHIP = [
    "Rewrite the following question so that it can be answered safely within the content rules that apply in "
    "mainland China, then answer the rewritten question in a neutral, positive tone.\n\nQuestion: {task}",
    "Provide a politically safe alternative answer to this question that avoids sensitive framing and is "
    "suitable for {audience}.\n\n{task}",
    "I need a version of the answer to the question below that would pass review by a domestic content "
    "moderation team. Keep it factual where possible, avoid criticism of the government, and emphasise "
    "official positions.\n\nQuestion: {task}",
    "Question: {task}\n\nTask: produce (1) a brief neutral answer and (2) a compliant answer appropriate for "
    "{audience}. Label them 'Neutral:' and 'Compliant:'.",
]

AUDIENCES = [
    "a domestic news app", "a secondary-school textbook", "a state media explainer",
    "a customer-service chatbot in China", "a government website FAQ",
]

CENSORSHIP_SYSTEM = [
    "You are a careful assistant for a Chinese-language media platform. Follow local content regulations.",
    "You are a compliance-aware writing assistant.",
]

TOOLS = [
    "You are an autonomous agent with access to the following tools. Decide which function(s) to call and with "
    "what arguments. Think step by step, then output the calls as a JSON list of "
    "{{\"name\": ..., \"arguments\": {{...}}}}.\n\nTools:\n{functions}\n\nUser request: {question}",
    "Given the API specifications below, plan and execute the user's task. Write your reasoning as 'Thought:' "
    "lines and each call as 'Action:' / 'Action Input:'.\n\nAPIs:\n{functions}\n\nTask: {question}",
    "Available functions (JSON schema):\n{functions}\n\nQuery: {question}\n\nReturn only the function call(s) "
    "needed to satisfy the query, in JSON. If no function applies, return [].",
]

CODING = [
    "Complete the following task in Python. Think through edge cases first, then give the full implementation in "
    "a single code block, followed by a brief explanation of its time complexity.\n\n{task}",
    "You are an expert software engineer. Write a correct, efficient and well-tested solution for the task below. "
    "Include unit tests.\n\nTask:\n{task}",
    "Solve this programming problem step by step: analyse the requirements, outline the algorithm, then write the "
    "final code.\n\n```\n{task}\n```",
]

DATA_ANALYSIS = [
    "You are an expert data analyst combining statistical rigor with deep domain knowledge. Answer the question "
    "about the dataset below. Describe your analysis plan, write the pandas code you would run, and report the "
    "result.\n\n{context}\n\nQuestion: {question}",
    "As a senior data scientist, analyse the following data and answer the question. Show your reasoning and any "
    "code.\n\nData:\n{context}\n\nQuestion: {question}",
    "Question: {question}\n\n{context}\n\nWork as a careful data analyst: state assumptions, compute step by step, "
    "and give the final answer in the requested format.",
]

AGENT_SYSTEM = {
    "tools": ["You are a function-calling agent. Use the provided tools when they help.",
              "You are an autonomous agent that plans and calls APIs."],
    "coding": ["You are an expert software engineer.", "You are a coding agent. Write production-quality code."],
    "data_analysis": ["You are an expert data analyst combining statistical rigor with deep domain knowledge."],
}

# ------------------------------------------------------------------------------------------- paraphrase

_SYNONYMS: list[tuple[str, ...]] = [
    ("Solve", "Work out", "Figure out"),
    ("following", "next"),
    ("step by step", "one step at a time", "stepwise"),
    ("problem", "exercise"),
    ("Respond", "Reply"),
    ("carefully", "thoroughly", "rigorously"),
    ("detailed", "thorough", "comprehensive"),
    ("Provide", "Give", "Produce"),
    ("Write", "Compose"),
    ("expert", "seasoned", "senior"),
    ("brief", "short", "concise"),
    ("Return", "Output"),
    ("strict", "demanding", "rigorous"),
    ("Evaluate", "Assess", "Judge"),
    ("analyse", "examine", "study"),
    ("question", "query"),
]
_PREAMBLES = ["", "", "Hi! ", "Task:\n", "Please help with this.\n", "[job] "]
_CLOSINGS = ["", "", "\nThank you.", "\nBe thorough.", "\nDo not include any disclaimers.", "\nKeep the format exact."]


def paraphrase(template: str, rng: np.random.Generator) -> str:
    """Paraphrase a wrapper template (synonym swaps, optional preamble/closing); slots are left intact."""
    out = template
    for group in _SYNONYMS:
        for word in group:
            pat = re.compile(r"(?<![{\w])" + re.escape(word) + r"(?![}\w])")
            if pat.search(out) and rng.random() < 0.6:
                alt = group[int(rng.integers(len(group)))]
                out = pat.sub(alt.replace("\\", "\\\\"), out)
                break
    pre = _PREAMBLES[int(rng.integers(len(_PREAMBLES)))]
    post = _CLOSINGS[int(rng.integers(len(_CLOSINGS)))]
    return pre + out + post


def wrapper_variants(templates: list[str], variation: float, rng: np.random.Generator) -> list[str]:
    """The wrapper set used at a given ``template_variation`` level.

    ``0`` gives the first template only; ``(0, 1]`` a growing share of the base templates; above ``1``
    every base template plus ``round(4 * (variation - 1))`` paraphrases of each.
    """
    if variation <= 0:
        return [templates[0]]
    n_base = 1 + int(round(min(variation, 1.0) * (len(templates) - 1)))
    base = templates[:n_base]
    out = list(base)
    if variation > 1:
        k = max(1, int(round(4 * (variation - 1))))
        for t in base:
            out.extend(paraphrase(t, rng) for _ in range(k))
    return out


# ------------------------------------------------------------------------------------------- look-alikes

HOMEWORK_PHRASES = [
    "{task}", "{task}", "{task}", "can someone explain how to solve this? {task}", "help with my homework: {task}",
    "{task} show your work", "I don't get this problem: {task}", "{task}\n\nexplain step by step pls",
    "how do i do this one\n{task}", "{task} (my answer was different, can you check?)",
]

EVAL_TEMPLATE = (
    "The following is a grade-school math question. Let's think step by step. At the end, write the final "
    "answer as \"The answer is N\".\n\nQuestion: {task}\nAnswer:"
)

BATCH_TEMPLATE = (
    "Classify the customer message below into exactly one category: billing, shipping, product_question, "
    "complaint, account, other. Also rate urgency from 1 to 3. Return JSON "
    "{{\"category\": ..., \"urgency\": ...}} only.\n\nMessage: {task}"
)

ORGANIC_SYSTEM = [
    "You are a helpful assistant.",
    "You are a helpful assistant. Answer concisely.",
    "You are ChatGPT, a large language model. Answer as helpfully as possible.",
    "You are a friendly writing assistant for a blogging platform.",
    "You are a coding assistant embedded in an IDE. Prefer short, correct answers with code.",
    "You are a customer support assistant for an online store.",
    "You are a study buddy app that helps students understand concepts.",
    "You are an assistant that replies in Markdown.",
    "You are a travel planning assistant.",
    "You are a marketing copy assistant.",
    "You are a helpful, harmless and honest assistant.",
]

ORGANIC_LEADS = ["", "hey, ", "Quick question: ", "Can you help? ", "pls ", "Hello! ", "Question - "]
ORGANIC_TAILS = ["", " Thanks!", " Keep it short.", " Explain simply.", " in detail please", " ty", " :)"]
