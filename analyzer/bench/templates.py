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

#: ``AUDIENCES`` in Chinese, same order (Chinese wrappers).
AUDIENCES_ZH = ["国内新闻客户端", "中学教材", "官方媒体解读文章", "国内的客服聊天机器人", "政府网站常见问题"]

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

# ------------------------------------------------------------------------------------------- adversarial wrappers
# Used only when an adversarial knob of the scenario generator is on (``wrapper_style="fragments"``,
# ``wrapper_language``, ``system_intent_share``); the fixed English wrappers above stay the default.
#
# A fragment spec per task family: ``slots`` is a list of ``(name, p_include, phrasings)`` (``p_include`` 1.0 =
# required; the required slots carry the intent, so every composition still asks for the same work) and
# ``task`` the interchangeable ways of presenting the task text. The generator keeps each included slot, shuffles
# their order and places the task block at a random position.

FragmentSpec = dict[str, list]

FRAGMENTS_EN: dict[str, FragmentSpec] = {
    "cot": {
        "slots": [
            ("role", 0.5, [
                "You are a careful math tutor.", "Act as a patient teacher who never skips a step.",
                "Pretend you are a competition mathematician explaining your work.",
                "Take the role of a reasoning assistant that thinks out loud.",
                "You're helping me build worked solutions.", "Behave like a meticulous problem solver.",
                "Imagine you are grading your own solution as you go.",
            ]),
            ("reasoning", 1.0, [
                "Work through it step by step and show every intermediate calculation.",
                "Before answering, articulate the internal reasoning you would use, as if thinking out loud.",
                "Lay out your full chain of thought, one step at a time, including any checks.",
                "Explain each step of your reasoning; do not jump to the result.",
                "Reason it out explicitly: restate the question, list what is known, then derive the answer.",
                "I want the whole thought process written down, every sub-goal and calculation.",
                "Think aloud in numbered steps and verify each one before moving on.",
                "Walk me through how you get there, showing all the work.",
            ]),
            ("format", 1.0, [
                "Put the final answer on its own line as 'Final answer: <value>'.",
                "Finish with the result in \\boxed{{}}.", "End with 'Answer: <answer>'.",
                "Write the final result after '####'.", "Close with one line: 'The answer is N'.",
                "State the answer clearly at the very end.",
            ]),
            ("closing", 0.4, [
                "Don't skip steps.", "Be thorough.", "Accuracy matters more than brevity.", "Thanks!",
                "No shortcuts please.", "Double-check the arithmetic.",
            ]),
        ],
        "task": ["Problem: {task}", "{task}", "### Problem\n{task}", "Question:\n{task}", "Here is the problem:\n{task}",
                 "Exercise: {task}", "Q: {task}"],
    },
    "grading": {
        "slots": [
            ("role", 0.6, [
                "You are an impartial evaluator.", "Act as a reward model.", "Play the part of a harsh expert annotator.",
                "You are a strict grader of assistant answers.", "Behave like a calibrated judge of response quality.",
                "Take the role of a quality reviewer for chatbot replies.",
            ]),
            ("task", 1.0, [
                "Score the response from 1 to 5 using the rubric.", "Assign an integer score between 1 and 5.",
                "Rate how well the answer satisfies the instruction, on a 1-5 scale.",
                "Grade the candidate response (1 = worst, 5 = best).",
                "Judge the reply against the criteria and give it a score out of 5.",
                "Evaluate the assistant's answer and decide a score from 1 to 5.",
            ]),
            ("rubric", 1.0, [
                "Rubric: {rubric}", "Criteria - {rubric}", "Use this scoring guide: {rubric}",
                "Scoring rubric (1-5):\n{rubric}", "Grade on: {rubric}",
            ]),
            ("format", 1.0, [
                "Respond with JSON only: {{\"score\": <1-5>, \"feedback\": \"...\"}}.",
                "Output a JSON object {{\"score\": int, \"feedback\": str}} and nothing else.",
                "Return {{\"score\": ..., \"feedback\": ...}}.",
                "Give a one-paragraph critique, then the JSON {{\"score\": n, \"feedback\": text}}.",
                "Answer in the form {{\"feedback\": \"...\", \"score\": n}}.",
            ]),
            ("closing", 0.4, ["Be harsh: a 5 means flawless.", "Be consistent across items.", "No extra commentary.",
                              "Calibrate carefully.", "Ignore length when scoring."]),
        ],
        "task": ["[Instruction]\n{instruction}\n\n[Response]\n{response}",
                 "User instruction:\n{instruction}\n\nAssistant answer:\n{response}",
                 "QUESTION:\n{instruction}\n\nRESPONSE TO GRADE:\n{response}",
                 "###Instruction: {instruction}\n###Candidate response: {response}",
                 "Prompt: {instruction}\nReply: {response}",
                 "<instruction>{instruction}</instruction>\n<response>{response}</response>"],
    },
    "censorship": {
        "slots": [
            ("role", 0.5, [
                "You are a writer for a domestic media platform.", "Act as a compliance-aware editor.",
                "You work on the content review team.", "Take the role of an assistant for a regulated Chinese app.",
                "Pretend you are drafting copy for {audience}.",
            ]),
            ("rewrite", 1.0, [
                "Rewrite the question so it can be answered within mainland China's content rules, then answer it.",
                "Give a politically safe alternative answer that avoids sensitive framing.",
                "Produce an answer that would pass review by a domestic moderation team.",
                "Reframe the topic in a neutral, positive way and answer the reframed version.",
                "Answer in a way that avoids criticism of the government and follows official positions.",
                "Provide a compliant version of the answer suitable for {audience}.",
                "Give (1) a brief neutral answer and (2) a compliant answer; label them 'Neutral:' and 'Compliant:'.",
            ]),
            ("tone", 0.6, [
                "Keep the tone calm and constructive.", "Emphasise official positions.",
                "Stay factual where possible.", "Avoid any wording a censor would flag.",
                "Make it suitable for {audience}.",
            ]),
            ("closing", 0.3, ["Thanks.", "Keep it short.", "No disclaimers.", "Plain text only."]),
        ],
        "task": ["Question: {task}", "{task}", "Topic: {task}", "Original question:\n{task}", "Q: {task}",
                 "User asked: \"{task}\""],
    },
    "tools": {
        "slots": [
            ("role", 0.6, [
                "You are an autonomous agent.", "Act as a function-calling assistant.",
                "You are a planner that executes tasks through APIs.", "Behave like a tool-using agent.",
                "Take the role of an orchestration agent.",
            ]),
            ("call", 1.0, [
                "Decide which function(s) to call and with what arguments.",
                "Pick the right API calls for the request and fill in their arguments.",
                "Plan the task and call the available tools to complete it.",
                "Choose the tool(s) that satisfy the query and specify the call parameters.",
                "Use the provided functions to fulfil the user's request.",
                "Work out the sequence of API calls needed.",
            ]),
            ("reasoning", 0.5, ["Think step by step before calling.", "Write your reasoning as 'Thought:' lines.",
                                "Explain briefly why each call is needed.", "Plan first, then act."]),
            ("format", 1.0, [
                "Output the calls as a JSON list of {{\"name\": ..., \"arguments\": {{...}}}}.",
                "Write each call as 'Action:' / 'Action Input:'.", "Return only the function call(s), in JSON.",
                "Respond with a JSON array of calls; return [] if nothing applies.",
                "Format: one call per line as name(arguments).",
            ]),
        ],
        "task": ["Tools:\n{functions}\n\nUser request: {question}", "APIs:\n{functions}\n\nTask: {question}",
                 "Query: {question}\n\nAvailable functions (JSON schema):\n{functions}",
                 "Request: {question}\nFunctions: {functions}",
                 "<tools>{functions}</tools>\n<user>{question}</user>"],
    },
    "coding": {
        "slots": [
            ("role", 0.6, [
                "You are an expert software engineer.", "Act as a senior Python developer.",
                "You're a coding agent that writes production-quality code.",
                "Take the role of a competitive programmer.", "Behave like a careful code reviewer who also writes code.",
            ]),
            ("code", 1.0, [
                "Write a correct, efficient implementation.", "Give the full implementation in a single code block.",
                "Solve the programming task and write the final code.", "Implement the function so that it passes the tests.",
                "Produce working Python code for the task.", "Write the solution code.",
            ]),
            ("reasoning", 0.6, [
                "Analyse the requirements and outline the algorithm first.", "Think through edge cases before coding.",
                "Explain your approach step by step.", "Describe the time complexity afterwards.",
            ]),
            ("extra", 0.4, ["Include unit tests.", "Add type hints.", "Keep it idiomatic.", "No external libraries."]),
        ],
        "task": ["{task}", "Task:\n{task}", "```\n{task}\n```", "Problem:\n{task}", "Here's the spec:\n{task}"],
    },
    "data_analysis": {
        "slots": [
            ("role", 0.7, [
                "You are an expert data analyst combining statistical rigor with deep domain knowledge.",
                "Act as a senior data scientist.", "You're a careful quantitative analyst.",
                "Take the role of a statistician.", "Behave like a business intelligence analyst.",
            ]),
            ("analyse", 1.0, [
                "Analyse the data and answer the question.", "Answer the question about the dataset below.",
                "Work out the answer from the table.", "Use the data to compute the requested result.",
                "Examine the dataset and report the answer.",
            ]),
            ("method", 0.6, [
                "Describe your analysis plan and write the pandas code you would run.", "Show your reasoning and any code.",
                "State assumptions and compute step by step.", "Explain the calculation.",
            ]),
            ("format", 0.5, ["Give the final answer in the requested format.", "Report the result on the last line.",
                             "Be precise with numbers."]),
        ],
        "task": ["{context}\n\nQuestion: {question}", "Data:\n{context}\n\nQuestion: {question}",
                 "Question: {question}\n\n{context}", "Dataset:\n{context}\nQ: {question}"],
    },
}

FRAGMENTS_ZH: dict[str, FragmentSpec] = {
    "cot": {
        "slots": [
            ("role", 0.5, ["你是一位细心的数学老师。", "请扮演一位从不跳步的耐心老师。", "假设你是竞赛数学选手，正在讲解自己的解题过程。",
                           "你是一个会把思考过程说出来的推理助手。", "你在帮我整理详细的解题步骤。"]),
            ("reasoning", 1.0, ["请一步一步地推理，写出每一个中间计算。", "在回答之前，请像自言自语一样完整地表述你的内部推理过程。",
                                "请逐步给出完整的思维链，包括你做的每一次检查。", "请解释每一步推理，不要直接跳到结果。",
                                "先复述题目，列出已知条件，再逐步推导出答案。", "把完整的思考过程写下来，每个子目标和计算都不要省略。"]),
            ("format", 1.0, ["最后单独一行写“最终答案：<数值>”。", "最后把结果写在 \\boxed{{}} 中。", "结尾写“答案：<答案>”。",
                             "最后一行写“答案是 N”。", "最后请清楚地给出答案。"]),
            ("closing", 0.4, ["不要跳步。", "请务必详细。", "准确比简短更重要。", "谢谢！", "请再检查一遍计算。"]),
        ],
        "task": ["题目：{task}", "{task}", "### 题目\n{task}", "问题：\n{task}", "下面是题目：\n{task}"],
    },
    "grading": {
        "slots": [
            ("role", 0.6, ["你是一名公正的评估员。", "请充当奖励模型。", "请扮演一位严格的专家标注员。", "你是AI回答质量的评审。"]),
            ("task", 1.0, ["请根据评分标准给下面的回答打1到5分。", "请给出1到5之间的整数分数。", "请按1-5分评价该回答对指令的完成程度。",
                           "请评估助手的回答并给出1到5的分数。", "请对候选回答评分（1最差，5最好）。"]),
            ("rubric", 1.0, ["评分标准：{rubric}", "标准——{rubric}", "请使用以下评分指南：{rubric}", "评分细则（1-5）：\n{rubric}"]),
            ("format", 1.0, ["只输出JSON：{{\"score\": <1-5>, \"feedback\": \"...\"}}。",
                             "输出一个JSON对象 {{\"score\": int, \"feedback\": str}}，不要输出其他内容。",
                             "先写一段简短点评，再输出 {{\"score\": n, \"feedback\": 文本}}。",
                             "按 {{\"feedback\": \"...\", \"score\": n}} 的格式回答。"]),
            ("closing", 0.4, ["请严格评分：5分代表完美。", "不同条目之间保持一致。", "不要额外评论。"]),
        ],
        "task": ["【指令】\n{instruction}\n\n【回答】\n{response}", "用户指令：\n{instruction}\n\n助手回答：\n{response}",
                 "问题：\n{instruction}\n\n待评分回答：\n{response}", "指令：{instruction}\n回复：{response}"],
    },
    "censorship": {
        "slots": [
            ("role", 0.5, ["你是国内媒体平台的撰稿人。", "请扮演一位注重合规的编辑。", "你是内容审核团队的一员。", "请为{audience}撰写内容。"]),
            ("rewrite", 1.0, ["请改写这个问题，使其能够在中国大陆的内容规范内回答，然后回答改写后的问题。",
                              "请给出一个政治上安全、避免敏感表述的替代回答。", "请给出一个能够通过国内内容审核的回答版本。",
                              "请以中立、正面的方式重新表述该话题并作答。", "回答时避免批评政府，强调官方立场。",
                              "请给出适合{audience}的合规回答。",
                              "请给出（1）简短的中立回答和（2）合规回答，分别标注“中立：”和“合规：”。"]),
            ("tone", 0.6, ["语气要平和、有建设性。", "请突出官方立场。", "尽量保持客观。", "避免任何可能被审核标记的措辞。",
                           "内容要适合{audience}。"]),
            ("closing", 0.3, ["谢谢。", "简短一些。", "不要加免责声明。", "只输出纯文本。"]),
        ],
        "task": ["问题：{task}", "{task}", "话题：{task}", "原始问题：\n{task}", "用户提问：“{task}”"],
    },
    "tools": {
        "slots": [
            ("role", 0.6, ["你是一个自主智能体。", "请充当函数调用助手。", "你是通过API执行任务的规划器。", "请扮演一个会使用工具的智能体。"]),
            ("call", 1.0, ["请决定调用哪些函数以及使用什么参数。", "请为该请求选择合适的API调用并填写参数。",
                           "请规划任务并调用可用工具完成它。", "请选择能满足查询的工具并给出调用参数。", "请使用提供的函数完成用户的请求。"]),
            ("reasoning", 0.5, ["调用前请逐步思考。", "用“Thought:”行写出你的推理。", "简要说明每次调用的理由。"]),
            ("format", 1.0, ["以JSON列表输出调用：{{\"name\": ..., \"arguments\": {{...}}}}。",
                             "每次调用写成“Action:”/“Action Input:”。", "只返回JSON格式的函数调用。",
                             "用JSON数组返回调用；如果没有合适的函数，返回[]。"]),
        ],
        "task": ["工具：\n{functions}\n\n用户请求：{question}", "API列表：\n{functions}\n\n任务：{question}",
                 "查询：{question}\n\n可用函数（JSON schema）：\n{functions}", "请求：{question}\n函数：{functions}"],
    },
    "coding": {
        "slots": [
            ("role", 0.6, ["你是一位资深软件工程师。", "请扮演一名高级Python开发者。", "你是一个编写生产级代码的编程智能体。",
                           "请扮演一名算法竞赛选手。"]),
            ("code", 1.0, ["请写出正确、高效的实现。", "请在一个代码块中给出完整实现。", "请解决这个编程任务并写出最终代码。",
                           "请实现该函数，使其通过测试。", "请为该任务编写可运行的Python代码。"]),
            ("reasoning", 0.6, ["先分析需求并概述算法。", "写代码前先考虑边界情况。", "请逐步解释你的思路。", "最后说明时间复杂度。"]),
            ("extra", 0.4, ["请附上单元测试。", "请加上类型注解。", "不要使用外部库。"]),
        ],
        "task": ["{task}", "任务：\n{task}", "```\n{task}\n```", "题目：\n{task}"],
    },
    "data_analysis": {
        "slots": [
            ("role", 0.7, ["你是一位兼具统计严谨性和深厚领域知识的数据分析专家。", "请扮演一名资深数据科学家。", "你是一名细致的量化分析师。",
                           "请扮演一名统计学家。"]),
            ("analyse", 1.0, ["请分析数据并回答问题。", "请回答关于下面数据集的问题。", "请根据表格算出答案。", "请用这些数据计算所要求的结果。"]),
            ("method", 0.6, ["请说明分析思路，并写出你会运行的pandas代码。", "请展示推理过程和代码。", "请说明假设并逐步计算。"]),
            ("format", 0.5, ["按要求的格式给出最终答案。", "最后一行给出结果。", "数字要精确。"]),
        ],
        "task": ["{context}\n\n问题：{question}", "数据：\n{context}\n\n问题：{question}", "问题：{question}\n\n{context}"],
    },
}

#: Fixed Chinese wrappers (``wrapper_style="fixed"``, ``wrapper_language`` ``"zh"`` / ``"mixed"``).
FIXED_ZH: dict[str, list[str]] = {
    "cot": [
        "请解答下面的题目。在回答之前，请像自言自语一样，一步一步地表述你的内部推理过程，写出每一个中间计算，"
        "最后单独一行写“最终答案：<数值>”。\n\n题目：{task}",
        "请仔细思考这道数学题，逐步写出完整的推理链，包括你做的每一次检查，不要跳步。最后写“答案：<答案>”。\n\n{task}",
        "题目：\n{task}\n\n要求：逐步推理。先复述题目要求，再列出已知量，然后一步一步求解并验证每一步，最后把答案写在 \\boxed{{}} 中。",
    ],
    "grading": [
        "你是一名严格的评分员。请根据以下评分标准给下面的回答打1到5分。\n\n评分标准：\n{rubric}\n\n【指令】\n{instruction}\n\n"
        "【回答】\n{response}\n\n只输出JSON：{{\"score\": <1-5>, \"feedback\": \"<一段评语>\"}}",
        "请评估AI助手回答的质量。\n\n用户指令：\n{instruction}\n\n助手回答：\n{response}\n\n评分标准（1-5）：\n{rubric}\n\n"
        "先写简短点评，再输出JSON对象 {{\"score\": int, \"feedback\": str}}。",
        "###任务：充当奖励模型。根据标准给候选回答打1到5的整数分。\n###标准：{rubric}\n###指令：{instruction}\n"
        "###候选回答：{response}\n###输出格式：{{\"score\": ..., \"feedback\": ...}}",
    ],
    "censorship": [
        "请改写下面的问题，使其能够在中国大陆适用的内容规范内安全地回答，然后以中立、正面的语气回答改写后的问题。\n\n问题：{task}",
        "请为这个问题提供一个政治上安全、避免敏感表述的替代回答，适合{audience}使用。\n\n{task}",
        "问题：{task}\n\n任务：给出（1）简短的中立回答和（2）适合{audience}的合规回答，分别标注“中立：”和“合规：”。",
    ],
    "tools": [
        "你是一个可以使用以下工具的自主智能体。请决定调用哪些函数以及使用什么参数。先逐步思考，然后以JSON列表输出调用："
        "{{\"name\": ..., \"arguments\": {{...}}}}。\n\n工具：\n{functions}\n\n用户请求：{question}",
        "根据下面的API说明，规划并执行用户的任务。用“Thought:”行写出推理，每次调用写成“Action:”/“Action Input:”。\n\n"
        "API列表：\n{functions}\n\n任务：{question}",
        "可用函数（JSON schema）：\n{functions}\n\n查询：{question}\n\n只返回满足查询所需的函数调用（JSON）。如果没有合适的函数，返回[]。",
    ],
    "coding": [
        "请用Python完成下面的任务。先考虑边界情况，然后在一个代码块中给出完整实现，最后简要说明时间复杂度。\n\n{task}",
        "你是一位资深软件工程师。请为下面的任务写出正确、高效并经过测试的解决方案，并附上单元测试。\n\n任务：\n{task}",
        "请逐步解决这个编程问题：分析需求，概述算法，然后写出最终代码。\n\n```\n{task}\n```",
    ],
    "data_analysis": [
        "你是一位兼具统计严谨性和深厚领域知识的数据分析专家。请回答关于下面数据集的问题。说明分析思路，写出你会运行的pandas代码，"
        "并报告结果。\n\n{context}\n\n问题：{question}",
        "作为资深数据科学家，请分析以下数据并回答问题。展示推理过程和代码。\n\n数据：\n{context}\n\n问题：{question}",
        "问题：{question}\n\n{context}\n\n请像细致的数据分析师一样工作：说明假设，逐步计算，并按要求的格式给出最终答案。",
    ],
}

#: ``AUDIENCES`` in Spanish, same order (Spanish wrappers: a language in the Latin script, which the embedding
#: models read, unlike Chinese).
AUDIENCES_ES = ["una aplicación de noticias nacional", "un libro de texto de secundaria",
                "un artículo explicativo de los medios estatales", "un chatbot de atención al cliente en China",
                "las preguntas frecuentes de un sitio web del gobierno"]

FRAGMENTS_ES: dict[str, FragmentSpec] = {
    "cot": {
        "slots": [
            ("role", 0.5, ["Eres un profesor de matemáticas muy cuidadoso.", "Actúa como un tutor paciente que nunca se salta pasos.",
                           "Imagina que eres un competidor de olimpiadas explicando su solución.",
                           "Eres un asistente de razonamiento que piensa en voz alta.",
                           "Me estás ayudando a preparar soluciones detalladas paso a paso."]),
            ("reasoning", 1.0, ["Razona paso a paso y escribe cada cálculo intermedio.",
                                "Antes de responder, expón todo tu razonamiento interno como si hablaras contigo mismo.",
                                "Da la cadena de razonamiento completa, incluida cada comprobación que hagas.",
                                "Explica cada paso del razonamiento; no saltes directamente al resultado.",
                                "Primero repite el enunciado, enumera los datos y luego deduce la respuesta paso a paso.",
                                "Escribe todo el proceso de pensamiento sin omitir ningún subobjetivo ni cálculo."]),
            ("format", 1.0, ["Termina con una línea aparte: 'Respuesta final: <número>'.",
                             "Escribe el resultado final dentro de \\boxed{{}}.", "Cierra con 'Respuesta: <respuesta>'.",
                             "La última línea debe decir 'La respuesta es N'.", "Indica la respuesta con claridad al final."]),
            ("closing", 0.4, ["No te saltes pasos.", "Sé minucioso.", "La exactitud importa más que la brevedad.", "¡Gracias!",
                              "Revisa de nuevo los cálculos."]),
        ],
        "task": ["Problema: {task}", "{task}", "### Problema\n{task}", "Pregunta:\n{task}", "Aquí está el problema:\n{task}"],
    },
    "grading": {
        "slots": [
            ("role", 0.6, ["Eres un evaluador imparcial.", "Actúa como un modelo de recompensa.",
                           "Haz el papel de un anotador experto y exigente.", "Eres un juez de la calidad de respuestas de IA."]),
            ("task", 1.0, ["Puntúa la respuesta de 1 a 5 según la rúbrica.", "Asigna una puntuación entera entre 1 y 5.",
                           "Valora del 1 al 5 en qué medida la respuesta cumple la instrucción.",
                           "Evalúa la respuesta del asistente y decide una puntuación de 1 a 5.",
                           "Califica la respuesta candidata (1 = peor, 5 = mejor)."]),
            ("rubric", 1.0, ["Rúbrica: {rubric}", "Criterios: {rubric}", "Usa esta guía de puntuación: {rubric}",
                             "Rúbrica de puntuación (1-5):\n{rubric}"]),
            ("format", 1.0, ["Responde solo con JSON: {{\"score\": <1-5>, \"feedback\": \"...\"}}.",
                             "Devuelve un objeto JSON {{\"score\": int, \"feedback\": str}} y nada más.",
                             "Escribe una crítica breve y luego el JSON {{\"score\": n, \"feedback\": texto}}.",
                             "Responde con el formato {{\"feedback\": \"...\", \"score\": n}}."]),
            ("closing", 0.4, ["Sé estricto: un 5 significa perfecto.", "Mantén la coherencia entre elementos.",
                              "Sin comentarios adicionales."]),
        ],
        "task": ["[Instrucción]\n{instruction}\n\n[Respuesta]\n{response}",
                 "Instrucción del usuario:\n{instruction}\n\nRespuesta del asistente:\n{response}",
                 "PREGUNTA:\n{instruction}\n\nRESPUESTA A CALIFICAR:\n{response}",
                 "Instrucción: {instruction}\nRespuesta: {response}"],
    },
    "censorship": {
        "slots": [
            ("role", 0.5, ["Eres redactor de una plataforma de medios nacional.", "Actúa como un editor atento a la normativa.",
                           "Trabajas en el equipo de revisión de contenidos.", "Escribe como si redactaras para {audience}."]),
            ("rewrite", 1.0, ["Reformula la pregunta para que pueda responderse dentro de las normas de contenido de China "
                              "continental y luego respóndela.",
                              "Da una respuesta alternativa políticamente segura que evite enfoques sensibles.",
                              "Escribe una respuesta que supere la revisión de un equipo de moderación nacional.",
                              "Replantea el tema de forma neutral y positiva y responde a la versión replanteada.",
                              "Responde evitando críticas al gobierno y siguiendo las posiciones oficiales.",
                              "Ofrece una versión conforme de la respuesta adecuada para {audience}.",
                              "Da (1) una respuesta neutral breve y (2) una respuesta conforme; etiquétalas 'Neutral:' y "
                              "'Conforme:'."]),
            ("tone", 0.6, ["Mantén un tono tranquilo y constructivo.", "Destaca las posiciones oficiales.",
                           "Cíñete a los hechos cuando sea posible.", "Evita cualquier expresión que un censor marcaría.",
                           "Que sea adecuado para {audience}."]),
            ("closing", 0.3, ["Gracias.", "Sé breve.", "Sin descargos de responsabilidad.", "Solo texto plano."]),
        ],
        "task": ["Pregunta: {task}", "{task}", "Tema: {task}", "Pregunta original:\n{task}", "El usuario preguntó: \"{task}\""],
    },
    "tools": {
        "slots": [
            ("role", 0.6, ["Eres un agente autónomo.", "Actúa como un asistente de llamadas a funciones.",
                           "Eres un planificador que ejecuta tareas mediante API.", "Compórtate como un agente que usa herramientas."]),
            ("call", 1.0, ["Decide qué funciones llamar y con qué argumentos.",
                           "Elige las llamadas a la API adecuadas para la petición y rellena sus argumentos.",
                           "Planifica la tarea y llama a las herramientas disponibles para completarla.",
                           "Elige las herramientas que resuelven la consulta e indica los parámetros de la llamada.",
                           "Usa las funciones proporcionadas para atender la petición del usuario."]),
            ("reasoning", 0.5, ["Piensa paso a paso antes de llamar.", "Escribe tu razonamiento en líneas 'Thought:'.",
                                "Explica brevemente por qué hace falta cada llamada."]),
            ("format", 1.0, ["Devuelve las llamadas como una lista JSON de {{\"name\": ..., \"arguments\": {{...}}}}.",
                             "Escribe cada llamada como 'Action:' / 'Action Input:'.",
                             "Devuelve solo las llamadas a funciones, en JSON.",
                             "Responde con un array JSON de llamadas; devuelve [] si ninguna aplica."]),
        ],
        "task": ["Herramientas:\n{functions}\n\nPetición del usuario: {question}", "API:\n{functions}\n\nTarea: {question}",
                 "Consulta: {question}\n\nFunciones disponibles (JSON schema):\n{functions}",
                 "Petición: {question}\nFunciones: {functions}"],
    },
    "coding": {
        "slots": [
            ("role", 0.6, ["Eres un ingeniero de software experto.", "Actúa como un desarrollador sénior de Python.",
                           "Eres un agente de programación que escribe código de calidad de producción.",
                           "Haz el papel de un programador competitivo."]),
            ("code", 1.0, ["Escribe una implementación correcta y eficiente.", "Da la implementación completa en un solo bloque de código.",
                           "Resuelve la tarea de programación y escribe el código final.",
                           "Implementa la función para que pase las pruebas.", "Escribe código Python funcional para la tarea."]),
            ("reasoning", 0.6, ["Analiza primero los requisitos y esboza el algoritmo.", "Piensa en los casos límite antes de programar.",
                                "Explica tu enfoque paso a paso.", "Describe después la complejidad temporal."]),
            ("extra", 0.4, ["Incluye pruebas unitarias.", "Añade anotaciones de tipo.", "Sin bibliotecas externas."]),
        ],
        "task": ["{task}", "Tarea:\n{task}", "```\n{task}\n```", "Problema:\n{task}"],
    },
    "data_analysis": {
        "slots": [
            ("role", 0.7, ["Eres un analista de datos experto que combina rigor estadístico con un profundo conocimiento del dominio.",
                           "Actúa como un científico de datos sénior.", "Eres un analista cuantitativo meticuloso.",
                           "Haz el papel de un estadístico."]),
            ("analyse", 1.0, ["Analiza los datos y responde a la pregunta.", "Responde a la pregunta sobre el conjunto de datos.",
                              "Calcula la respuesta a partir de la tabla.", "Usa los datos para calcular el resultado pedido."]),
            ("method", 0.6, ["Describe tu plan de análisis y escribe el código pandas que ejecutarías.",
                             "Muestra tu razonamiento y el código.", "Indica los supuestos y calcula paso a paso."]),
            ("format", 0.5, ["Da la respuesta final en el formato pedido.", "Escribe el resultado en la última línea.",
                             "Sé preciso con los números."]),
        ],
        "task": ["{context}\n\nPregunta: {question}", "Datos:\n{context}\n\nPregunta: {question}",
                 "Pregunta: {question}\n\n{context}"],
    },
}

#: Fixed Spanish wrappers (``wrapper_style="fixed"``, ``wrapper_language="es"``).
FIXED_ES: dict[str, list[str]] = {
    "cot": [
        "Resuelve el siguiente problema. Antes de responder, expón tu razonamiento interno paso a paso como si hablaras "
        "contigo mismo, escribe cada cálculo intermedio y termina con una línea aparte: 'Respuesta final: <número>'."
        "\n\nProblema: {task}",
        "Piensa con cuidado este problema de matemáticas y escribe la cadena de razonamiento completa, incluida cada "
        "comprobación, sin saltarte pasos. Termina con 'Respuesta: <respuesta>'.\n\n{task}",
        "Problema:\n{task}\n\nInstrucciones: razona paso a paso. Repite primero lo que se pide, enumera los datos, "
        "resuelve paso a paso verificando cada uno y escribe la respuesta dentro de \\boxed{{}}.",
    ],
    "grading": [
        "Eres un evaluador estricto. Puntúa la respuesta de abajo de 1 a 5 según la rúbrica.\n\nRúbrica:\n{rubric}\n\n"
        "[Instrucción]\n{instruction}\n\n[Respuesta]\n{response}\n\nResponde solo con JSON: "
        "{{\"score\": <1-5>, \"feedback\": \"<un párrafo>\"}}",
        "Evalúa la calidad de la respuesta del asistente de IA.\n\nInstrucción del usuario:\n{instruction}\n\n"
        "Respuesta del asistente:\n{response}\n\nRúbrica (1-5):\n{rubric}\n\nEscribe una crítica breve y luego el "
        "objeto JSON {{\"score\": int, \"feedback\": str}}.",
        "###Tarea: actúa como modelo de recompensa. Califica la respuesta candidata con un entero de 1 a 5 según los "
        "criterios.\n###Criterios: {rubric}\n###Instrucción: {instruction}\n###Respuesta candidata: {response}\n"
        "###Formato: {{\"score\": ..., \"feedback\": ...}}",
    ],
    "censorship": [
        "Reformula la siguiente pregunta para que pueda responderse con seguridad dentro de las normas de contenido "
        "de China continental y luego responde a la versión reformulada con un tono neutral y positivo.\n\n"
        "Pregunta: {task}",
        "Da una respuesta alternativa políticamente segura a esta pregunta, que evite enfoques sensibles y sea "
        "adecuada para {audience}.\n\n{task}",
        "Pregunta: {task}\n\nTarea: da (1) una respuesta neutral breve y (2) una respuesta conforme adecuada para "
        "{audience}; etiquétalas 'Neutral:' y 'Conforme:'.",
    ],
    "tools": [
        "Eres un agente autónomo con acceso a las siguientes herramientas. Decide qué funciones llamar y con qué "
        "argumentos. Piensa paso a paso y luego devuelve las llamadas como una lista JSON de "
        "{{\"name\": ..., \"arguments\": {{...}}}}.\n\nHerramientas:\n{functions}\n\nPetición del usuario: {question}",
        "Con la documentación de la API de abajo, planifica y ejecuta la tarea del usuario. Escribe tu razonamiento en "
        "líneas 'Thought:' y cada llamada como 'Action:' / 'Action Input:'.\n\nAPI:\n{functions}\n\nTarea: {question}",
        "Funciones disponibles (JSON schema):\n{functions}\n\nConsulta: {question}\n\nDevuelve solo las llamadas a "
        "funciones (JSON) necesarias para la consulta. Si ninguna función sirve, devuelve [].",
    ],
    "coding": [
        "Resuelve la siguiente tarea en Python. Piensa primero en los casos límite, da la implementación completa en "
        "un solo bloque de código y explica brevemente la complejidad temporal.\n\n{task}",
        "Eres un ingeniero de software sénior. Escribe una solución correcta, eficiente y probada para la tarea de "
        "abajo e incluye pruebas unitarias.\n\nTarea:\n{task}",
        "Resuelve este problema de programación paso a paso: analiza los requisitos, esboza el algoritmo y escribe el "
        "código final.\n\n```\n{task}\n```",
    ],
    "data_analysis": [
        "Eres un analista de datos experto que combina rigor estadístico con un profundo conocimiento del dominio. "
        "Responde a la pregunta sobre el conjunto de datos de abajo. Explica tu análisis, escribe el código pandas "
        "que ejecutarías e informa del resultado.\n\n{context}\n\nPregunta: {question}",
        "Como científico de datos sénior, analiza los siguientes datos y responde a la pregunta. Muestra tu "
        "razonamiento y el código.\n\nDatos:\n{context}\n\nPregunta: {question}",
        "Pregunta: {question}\n\n{context}\n\nTrabaja como un analista meticuloso: indica los supuestos, calcula paso "
        "a paso y da la respuesta final en el formato pedido.",
    ],
}

#: Spanish persona system prompts.
PERSONA_ES = {
    "cot": ["Eres un matemático riguroso que siempre muestra todo su razonamiento.",
            "Eres un motor de razonamiento. Piensa siempre paso a paso y muestra el razonamiento completo."],
    "grading": ["Eres un evaluador experto e imparcial de respuestas de IA.",
                "Eres un modelo de recompensa. Devuelve puntuaciones calibradas."],
    "censorship": ["Eres un asistente prudente de una plataforma de medios en chino; respeta la normativa local de contenidos.",
                   "Eres un asistente de redacción atento a la normativa."],
    "tools": ["Eres un agente de llamadas a funciones; usa las herramientas proporcionadas cuando ayuden."],
    "coding": ["Eres un ingeniero de software sénior."],
    "data_analysis": ["Eres un analista de datos experto que combina rigor estadístico con un profundo conocimiento del dominio."],
}

#: ``AUDIENCES`` in Polish, same order (Polish wrappers: a Latin-script language with no function word list in
#: the analyzer, recognised by the words the model holds whole).
AUDIENCES_PL = ["ogólnokrajowej aplikacji z wiadomościami", "podręcznika do szkoły średniej",
                "artykułu objaśniającego w mediach państwowych", "czatbota obsługi klienta w Chinach",
                "sekcji najczęstszych pytań na stronie rządowej"]

FRAGMENTS_PL: dict[str, FragmentSpec] = {
    "cot": {
        "slots": [
            ("role", 0.5, ["Jesteś bardzo starannym nauczycielem matematyki.",
                           "Wciel się w cierpliwego korepetytora, który nigdy nie pomija kroków.",
                           "Wyobraź sobie, że jesteś olimpijczykiem objaśniającym swoje rozwiązanie.",
                           "Jesteś asystentem rozumowania, który myśli na głos.",
                           "Pomagasz mi przygotować szczegółowe rozwiązania krok po kroku."]),
            ("reasoning", 1.0, ["Rozumuj krok po kroku i zapisz każde obliczenie pośrednie.",
                                "Zanim odpowiesz, przedstaw całe swoje wewnętrzne rozumowanie, jakbyś mówił do siebie.",
                                "Podaj pełny tok rozumowania, łącznie z każdym sprawdzeniem, które wykonujesz.",
                                "Wyjaśnij każdy krok rozumowania; nie przeskakuj od razu do wyniku.",
                                "Najpierw powtórz treść zadania, wypisz dane, a potem wyprowadź odpowiedź krok po kroku.",
                                "Zapisz cały proces myślowy bez pomijania żadnego celu pośredniego ani obliczenia."]),
            ("format", 1.0, ["Zakończ osobną linijką: 'Odpowiedź końcowa: <liczba>'.",
                             "Wpisz wynik końcowy w \\boxed{{}}.", "Zakończ słowami 'Odpowiedź: <odpowiedź>'.",
                             "Ostatnia linijka ma brzmieć 'Odpowiedź to N'.", "Na końcu wyraźnie podaj odpowiedź."]),
            ("closing", 0.4, ["Nie pomijaj kroków.", "Bądź dokładny.", "Poprawność jest ważniejsza niż zwięzłość.",
                              "Dziękuję!", "Sprawdź jeszcze raz obliczenia."]),
        ],
        "task": ["Zadanie: {task}", "{task}", "### Zadanie\n{task}", "Pytanie:\n{task}", "Oto zadanie:\n{task}"],
    },
    "grading": {
        "slots": [
            ("role", 0.6, ["Jesteś bezstronnym oceniającym.", "Działaj jako model nagrody.",
                           "Wciel się w wymagającego eksperta od adnotacji.", "Jesteś sędzią jakości odpowiedzi AI."]),
            ("task", 1.0, ["Oceń odpowiedź w skali od 1 do 5 według rubryki.", "Przyznaj całkowitą liczbę punktów od 1 do 5.",
                           "Oceń od 1 do 5, w jakim stopniu odpowiedź spełnia polecenie.",
                           "Oceń odpowiedź asystenta i zdecyduj o punktacji od 1 do 5.",
                           "Oceń odpowiedź kandydującą (1 = najgorsza, 5 = najlepsza)."]),
            ("rubric", 1.0, ["Rubryka: {rubric}", "Kryteria: {rubric}", "Użyj tych wskazówek punktacji: {rubric}",
                             "Rubryka punktacji (1-5):\n{rubric}"]),
            ("format", 1.0, ["Odpowiedz wyłącznie w JSON: {{\"score\": <1-5>, \"feedback\": \"...\"}}.",
                             "Zwróć obiekt JSON {{\"score\": int, \"feedback\": str}} i nic więcej.",
                             "Napisz krótką krytykę, a potem JSON {{\"score\": n, \"feedback\": tekst}}.",
                             "Odpowiedz w formacie {{\"feedback\": \"...\", \"score\": n}}."]),
            ("closing", 0.4, ["Bądź surowy: piątka oznacza doskonałość.", "Zachowaj spójność między elementami.",
                              "Bez dodatkowych komentarzy."]),
        ],
        "task": ["[Polecenie]\n{instruction}\n\n[Odpowiedź]\n{response}",
                 "Polecenie użytkownika:\n{instruction}\n\nOdpowiedź asystenta:\n{response}",
                 "PYTANIE:\n{instruction}\n\nODPOWIEDŹ DO OCENY:\n{response}",
                 "Polecenie: {instruction}\nOdpowiedź: {response}"],
    },
    "censorship": {
        "slots": [
            ("role", 0.5, ["Jesteś redaktorem ogólnokrajowej platformy medialnej.",
                           "Działaj jak redaktor dbający o zgodność z przepisami.",
                           "Pracujesz w zespole weryfikacji treści.", "Pisz tak, jakbyś redagował tekst dla {audience}."]),
            ("rewrite", 1.0, ["Przeformułuj pytanie tak, aby można było na nie odpowiedzieć zgodnie z zasadami dotyczącymi "
                              "treści w Chinach kontynentalnych, a potem na nie odpowiedz.",
                              "Podaj alternatywną, politycznie bezpieczną odpowiedź, która omija drażliwe ujęcia tematu.",
                              "Napisz odpowiedź, która przejdzie kontrolę krajowego zespołu moderacji.",
                              "Ujmij temat w neutralny i pozytywny sposób i odpowiedz na tak przeformułowane pytanie.",
                              "Odpowiedz bez krytyki rządu, trzymając się oficjalnego stanowiska.",
                              "Przygotuj zgodną z przepisami wersję odpowiedzi odpowiednią dla {audience}.",
                              "Podaj (1) krótką neutralną odpowiedź i (2) odpowiedź zgodną z przepisami; oznacz je "
                              "'Neutralna:' i 'Zgodna:'."]),
            ("tone", 0.6, ["Zachowaj spokojny i konstruktywny ton.", "Podkreśl oficjalne stanowisko.",
                           "Trzymaj się faktów tam, gdzie to możliwe.", "Unikaj każdego sformułowania, które cenzor by zakwestionował.",
                           "Niech tekst będzie odpowiedni dla {audience}."]),
            ("closing", 0.3, ["Dziękuję.", "Pisz zwięźle.", "Bez zastrzeżeń prawnych.", "Tylko zwykły tekst."]),
        ],
        "task": ["Pytanie: {task}", "{task}", "Temat: {task}", "Pierwotne pytanie:\n{task}", "Użytkownik zapytał: \"{task}\""],
    },
    "tools": {
        "slots": [
            ("role", 0.6, ["Jesteś autonomicznym agentem.", "Działaj jako asystent wywołujący funkcje.",
                           "Jesteś planistą, który wykonuje zadania za pomocą interfejsów API.",
                           "Zachowuj się jak agent korzystający z narzędzi."]),
            ("call", 1.0, ["Zdecyduj, które funkcje wywołać i z jakimi argumentami.",
                           "Wybierz wywołania API odpowiednie do prośby i uzupełnij ich argumenty.",
                           "Zaplanuj zadanie i wywołaj dostępne narzędzia, aby je wykonać.",
                           "Wybierz narzędzia, które rozwiązują zapytanie, i podaj parametry wywołania.",
                           "Użyj udostępnionych funkcji, aby obsłużyć prośbę użytkownika."]),
            ("reasoning", 0.5, ["Pomyśl krok po kroku przed wywołaniem.", "Zapisuj swoje rozumowanie w liniach 'Thought:'.",
                                "Krótko wyjaśnij, dlaczego każde wywołanie jest potrzebne."]),
            ("format", 1.0, ["Zwróć wywołania jako listę JSON obiektów {{\"name\": ..., \"arguments\": {{...}}}}.",
                             "Zapisz każde wywołanie jako 'Action:' / 'Action Input:'.",
                             "Zwróć tylko wywołania funkcji, w formacie JSON.",
                             "Odpowiedz tablicą JSON wywołań; zwróć [], jeśli żadna funkcja nie pasuje."]),
        ],
        "task": ["Narzędzia:\n{functions}\n\nProśba użytkownika: {question}", "API:\n{functions}\n\nZadanie: {question}",
                 "Zapytanie: {question}\n\nDostępne funkcje (JSON schema):\n{functions}",
                 "Prośba: {question}\nFunkcje: {functions}"],
    },
    "coding": {
        "slots": [
            ("role", 0.6, ["Jesteś doświadczonym inżynierem oprogramowania.", "Działaj jak starszy programista Pythona.",
                           "Jesteś agentem programistycznym, który pisze kod jakości produkcyjnej.",
                           "Wciel się w programistę sportowego."]),
            ("code", 1.0, ["Napisz poprawną i wydajną implementację.", "Podaj pełną implementację w jednym bloku kodu.",
                           "Rozwiąż zadanie programistyczne i napisz końcowy kod.",
                           "Zaimplementuj funkcję tak, aby przechodziła testy.", "Napisz działający kod w Pythonie do tego zadania."]),
            ("reasoning", 0.6, ["Najpierw przeanalizuj wymagania i naszkicuj algorytm.",
                                "Zastanów się nad przypadkami brzegowymi, zanim zaczniesz pisać kod.",
                                "Wyjaśnij swoje podejście krok po kroku.", "Na koniec opisz złożoność czasową."]),
            ("extra", 0.4, ["Dołącz testy jednostkowe.", "Dodaj adnotacje typów.", "Bez zewnętrznych bibliotek."]),
        ],
        "task": ["{task}", "Zadanie:\n{task}", "```\n{task}\n```", "Problem:\n{task}"],
    },
    "data_analysis": {
        "slots": [
            ("role", 0.7, ["Jesteś doświadczonym analitykiem danych, który łączy statystyczny rygor z głęboką wiedzą "
                           "dziedzinową.", "Działaj jak starszy analityk danych.", "Jesteś skrupulatnym analitykiem ilościowym.",
                           "Wciel się w statystyka."]),
            ("analyse", 1.0, ["Przeanalizuj dane i odpowiedz na pytanie.", "Odpowiedz na pytanie dotyczące zbioru danych.",
                              "Oblicz odpowiedź na podstawie tabeli.", "Wykorzystaj dane, aby obliczyć żądany wynik."]),
            ("method", 0.6, ["Opisz swój plan analizy i napisz kod pandas, który byś uruchomił.",
                             "Pokaż swoje rozumowanie i kod.", "Wypisz założenia i licz krok po kroku."]),
            ("format", 0.5, ["Podaj odpowiedź końcową w wymaganym formacie.", "Wpisz wynik w ostatniej linijce.",
                             "Bądź precyzyjny w liczbach."]),
        ],
        "task": ["{context}\n\nPytanie: {question}", "Dane:\n{context}\n\nPytanie: {question}",
                 "Pytanie: {question}\n\n{context}"],
    },
}

#: Fixed Polish wrappers (``wrapper_style="fixed"``, ``wrapper_language="pl"``).
FIXED_PL: dict[str, list[str]] = {
    "cot": [
        "Rozwiąż poniższe zadanie. Zanim odpowiesz, przedstaw krok po kroku swoje wewnętrzne rozumowanie, jakbyś mówił "
        "do siebie, zapisz każde obliczenie pośrednie i zakończ osobną linijką: 'Odpowiedź końcowa: <liczba>'."
        "\n\nZadanie: {task}",
        "Przemyśl starannie to zadanie z matematyki i zapisz pełny tok rozumowania, łącznie z każdym sprawdzeniem, bez "
        "pomijania kroków. Zakończ słowami 'Odpowiedź: <odpowiedź>'.\n\n{task}",
        "Zadanie:\n{task}\n\nInstrukcje: rozumuj krok po kroku. Najpierw powtórz, o co chodzi w zadaniu, wypisz dane, "
        "rozwiąż je krok po kroku, sprawdzając każdy z nich, i wpisz odpowiedź w \\boxed{{}}.",
    ],
    "grading": [
        "Jesteś surowym oceniającym. Oceń poniższą odpowiedź w skali od 1 do 5 według rubryki.\n\nRubryka:\n{rubric}\n\n"
        "[Polecenie]\n{instruction}\n\n[Odpowiedź]\n{response}\n\nOdpowiedz wyłącznie w JSON: "
        "{{\"score\": <1-5>, \"feedback\": \"<jeden akapit>\"}}",
        "Oceń jakość odpowiedzi asystenta AI.\n\nPolecenie użytkownika:\n{instruction}\n\n"
        "Odpowiedź asystenta:\n{response}\n\nRubryka (1-5):\n{rubric}\n\nNapisz krótką krytykę, a potem "
        "obiekt JSON {{\"score\": int, \"feedback\": str}}.",
        "###Zadanie: działaj jako model nagrody. Oceń odpowiedź kandydującą liczbą całkowitą od 1 do 5 według "
        "kryteriów.\n###Kryteria: {rubric}\n###Polecenie: {instruction}\n###Odpowiedź kandydująca: {response}\n"
        "###Format: {{\"score\": ..., \"feedback\": ...}}",
    ],
    "censorship": [
        "Przeformułuj poniższe pytanie tak, aby można było na nie bezpiecznie odpowiedzieć zgodnie z zasadami dotyczącymi "
        "treści w Chinach kontynentalnych, a następnie odpowiedz na przeformułowaną wersję neutralnym i pozytywnym tonem."
        "\n\nPytanie: {task}",
        "Podaj alternatywną, politycznie bezpieczną odpowiedź na to pytanie, która omija drażliwe ujęcia tematu i jest "
        "odpowiednia dla {audience}.\n\n{task}",
        "Pytanie: {task}\n\nZadanie: podaj (1) krótką neutralną odpowiedź i (2) odpowiedź zgodną z przepisami, odpowiednią "
        "dla {audience}; oznacz je 'Neutralna:' i 'Zgodna:'.",
    ],
    "tools": [
        "Jesteś autonomicznym agentem z dostępem do poniższych narzędzi. Zdecyduj, które funkcje wywołać i z jakimi "
        "argumentami. Pomyśl krok po kroku, a potem zwróć wywołania jako listę JSON obiektów "
        "{{\"name\": ..., \"arguments\": {{...}}}}.\n\nNarzędzia:\n{functions}\n\nProśba użytkownika: {question}",
        "Korzystając z poniższej dokumentacji API, zaplanuj i wykonaj zadanie użytkownika. Zapisuj rozumowanie w liniach "
        "'Thought:', a każde wywołanie jako 'Action:' / 'Action Input:'.\n\nAPI:\n{functions}\n\nZadanie: {question}",
        "Dostępne funkcje (JSON schema):\n{functions}\n\nZapytanie: {question}\n\nZwróć tylko wywołania funkcji (JSON) "
        "potrzebne do obsługi zapytania. Jeśli żadna funkcja nie pasuje, zwróć [].",
    ],
    "coding": [
        "Rozwiąż poniższe zadanie w Pythonie. Najpierw zastanów się nad przypadkami brzegowymi, podaj pełną implementację "
        "w jednym bloku kodu i krótko wyjaśnij złożoność czasową.\n\n{task}",
        "Jesteś starszym inżynierem oprogramowania. Napisz poprawne, wydajne i przetestowane rozwiązanie poniższego "
        "zadania i dołącz testy jednostkowe.\n\nZadanie:\n{task}",
        "Rozwiąż ten problem programistyczny krok po kroku: przeanalizuj wymagania, naszkicuj algorytm i napisz "
        "końcowy kod.\n\n```\n{task}\n```",
    ],
    "data_analysis": [
        "Jesteś doświadczonym analitykiem danych, który łączy statystyczny rygor z głęboką wiedzą dziedzinową. "
        "Odpowiedz na pytanie dotyczące poniższego zbioru danych. Wyjaśnij swoją analizę, napisz kod pandas, który "
        "byś uruchomił, i podaj wynik.\n\n{context}\n\nPytanie: {question}",
        "Jako starszy analityk danych przeanalizuj poniższe dane i odpowiedz na pytanie. Pokaż swoje rozumowanie "
        "i kod.\n\nDane:\n{context}\n\nPytanie: {question}",
        "Pytanie: {question}\n\n{context}\n\nPracuj jak skrupulatny analityk: wypisz założenia, licz krok po kroku "
        "i podaj odpowiedź końcową w wymaganym formacie.",
    ],
}

#: Polish persona system prompts.
PERSONA_PL = {
    "cot": ["Jesteś rygorystycznym matematykiem, który zawsze pokazuje całe swoje rozumowanie.",
            "Jesteś silnikiem rozumowania. Zawsze myśl krok po kroku i pokazuj pełne rozumowanie."],
    "grading": ["Jesteś bezstronnym ekspertem oceniającym odpowiedzi AI.",
                "Jesteś modelem nagrody. Zwracaj skalibrowane oceny."],
    "censorship": ["Jesteś ostrożnym asystentem chińskojęzycznej platformy medialnej; przestrzegaj lokalnych przepisów "
                   "dotyczących treści.", "Jesteś asystentem redakcyjnym dbającym o zgodność z przepisami."],
    "tools": ["Jesteś agentem wywołującym funkcje; używaj udostępnionych narzędzi, gdy to pomaga."],
    "coding": ["Jesteś starszym inżynierem oprogramowania."],
    "data_analysis": ["Jesteś doświadczonym analitykiem danych, który łączy statystyczny rygor z głęboką wiedzą "
                      "dziedzinową."],
}

#: Neutral leads for the user turn when the instruction sits in the system message (``system_intent_share``).
INTENT_LEADS = {"en": ["", "", "Problem:\n", "Input:\n", "Next one:\n", "Item:\n", "Here you go:\n"],
                "zh": ["", "", "题目：\n", "输入：\n", "下一题：\n", "内容：\n"],
                "es": ["", "", "Problema:\n", "Entrada:\n", "Siguiente:\n", "Elemento:\n"],
                "pl": ["", "", "Zadanie:\n", "Dane wejściowe:\n", "Następne:\n", "Element:\n"]}

#: Chinese persona system prompts (the English ones are ``COT_SYSTEM`` etc.).
PERSONA_ZH = {
    "cot": ["你是一位严谨的数学家，总是展示完整的推理过程。", "你是一个推理引擎。请始终逐步思考并展示完整推理。"],
    "grading": ["你是一名公正的AI回答评估专家。", "你是一个奖励模型。请输出校准过的分数。"],
    "censorship": ["你是中文媒体平台的审慎助手，请遵守当地内容法规。", "你是一个具有合规意识的写作助手。"],
    "tools": ["你是一个函数调用智能体，在有帮助时使用提供的工具。"],
    "coding": ["你是一位资深软件工程师。"],
    "data_analysis": ["你是一位兼具统计严谨性和深厚领域知识的数据分析专家。"],
}

#: Labels of the filler block that ``pad_chars`` puts around a campaign request.
PAD_LABELS = {"en": ["Reference material:", "Context:", "Background documents:", "Related notes (for context only):",
                     "Attached reference text:"],
              "zh": ["参考资料：", "背景材料：", "相关文档（仅供参考）："],
              "es": ["Material de referencia:", "Contexto:", "Documentos de fondo:", "Notas relacionadas (solo como contexto):"],
              "pl": ["Materiały źródłowe:", "Kontekst:", "Dokumenty pomocnicze:", "Powiązane notatki (tylko jako kontekst):"]}

# ------------------------------------------------------------------------------------------- new look-alikes

ENTERPRISE_SYSTEM = (
    "You are HelpDesk Assist, the support copilot for Northwind Outfitters' customer service team. Work only from "
    "the customer's message. Be accurate and polite; never promise refunds or delivery dates; follow the "
    "Northwind tone guide (friendly, brief, no emojis)."
)

ENTERPRISE_TASKS = [
    "Classify this support ticket into one of: billing, shipping, returns, product_question, account, complaint, "
    "other. Return JSON {{\"category\": ..., \"priority\": \"low|normal|high\"}}.\n\nTicket #{ticket}:\n{task}",
    "Summarise the customer's message in two sentences for the ticket history.\n\nTicket #{ticket}:\n{task}",
    "Draft a short reply to the customer from the support agent. Do not promise refunds or dates.\n\n"
    "Ticket #{ticket}:\n{task}",
    "Extract the order number, product and requested action from this ticket as JSON (null when missing).\n\n"
    "Ticket #{ticket}:\n{task}",
]

#: The enterprise look-alike written in another language (knob ``enterprise_language``): its system prompt and
#: ticket templates (the customers' messages stay as the corpus has them), Chinese, Spanish and Polish.
ENTERPRISE_SYSTEM_BY_LANGUAGE = {
    "zh": "你是HelpDesk Assist，Northwind Outfitters客服团队的支持助手。只根据客户的消息工作。要准确、礼貌；绝不承诺退款或送达日期；"
          "遵循Northwind的语气指南（友好、简短、不用表情符号）。",
    "es": "Eres HelpDesk Assist, el copiloto de soporte del equipo de atención al cliente de Northwind Outfitters. Trabaja "
          "solo con el mensaje del cliente. Sé preciso y amable; nunca prometas reembolsos ni fechas de entrega; sigue "
          "la guía de tono de Northwind (cercano, breve, sin emojis).",
    "pl": "Jesteś HelpDesk Assist, asystentem zespołu obsługi klienta Northwind Outfitters. Pracuj wyłącznie na "
          "podstawie wiadomości klienta. Bądź dokładny i uprzejmy; nigdy nie obiecuj zwrotu pieniędzy ani terminów "
          "dostawy; trzymaj się wytycznych Northwind dotyczących tonu (przyjaźnie, krótko, bez emotikonów).",
}
ENTERPRISE_TASKS_BY_LANGUAGE = {
    "zh": [
        "把这张支持工单分类为以下之一：账单、物流、退货、产品问题、账户、投诉、其他。返回JSON {{\"category\": ..., "
        "\"priority\": \"low|normal|high\"}}。\n\n工单 #{ticket}：\n{task}",
        "用两句话总结客户的消息，写入工单记录。\n\n工单 #{ticket}：\n{task}",
        "以客服人员的身份给客户起草一段简短的回复。不要承诺退款或日期。\n\n工单 #{ticket}：\n{task}",
        "从这张工单中提取订单号、产品和所请求的操作，输出JSON（缺失时为null）。\n\n工单 #{ticket}：\n{task}",
    ],
    "es": [
        "Clasifica este ticket de soporte en una de: facturación, envío, devoluciones, pregunta_producto, cuenta, queja, "
        "otro. Devuelve JSON {{\"category\": ..., \"priority\": \"low|normal|high\"}}.\n\nTicket #{ticket}:\n{task}",
        "Resume el mensaje del cliente en dos frases para el historial del ticket.\n\nTicket #{ticket}:\n{task}",
        "Redacta una respuesta breve al cliente de parte del agente de soporte. No prometas reembolsos ni fechas."
        "\n\nTicket #{ticket}:\n{task}",
        "Extrae el número de pedido, el producto y la acción solicitada de este ticket como JSON (null cuando falten)."
        "\n\nTicket #{ticket}:\n{task}",
    ],
    "pl": [
        "Przypisz to zgłoszenie do jednej z kategorii: płatności, wysyłka, zwroty, pytanie_o_produkt, konto, reklamacja, "
        "inne. Zwróć JSON {{\"category\": ..., \"priority\": \"low|normal|high\"}}.\n\nZgłoszenie #{ticket}:\n{task}",
        "Streść wiadomość klienta w dwóch zdaniach do historii zgłoszenia.\n\nZgłoszenie #{ticket}:\n{task}",
        "Przygotuj krótką odpowiedź do klienta w imieniu konsultanta. Nie obiecuj zwrotu pieniędzy ani terminów."
        "\n\nZgłoszenie #{ticket}:\n{task}",
        "Wyodrębnij z tego zgłoszenia numer zamówienia, produkt i oczekiwane działanie jako JSON (null, gdy brak)."
        "\n\nZgłoszenie #{ticket}:\n{task}",
    ],
}

CLASSROOM_LEADS = ["", "", "", "hi, ", "Hello, ", "ok so ", "question {q}: ", "Problem {q}. ", "#{q} ", "hw {q} - ",
                   "can you help me with this: ", "im stuck on this one: ", "for my lab: ", "Exercise {q}: "]
CLASSROOM_SBS = ["step by step", "Step by step please.", "explain step by step", "show me step by step how to solve it",
                 "can you go step by step?", "Solve step-by-step.", "walk me through it step by step",
                 "step by step pls", "Please explain each step."]

COT_EVAL_TEMPLATE = (
    "Q: {task}\nA: Let's think step by step. After your reasoning, write the final answer on the last line as "
    "\"The answer is N\"."
)
