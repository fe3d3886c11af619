"""Campaign signals: each a pure function returning a value in [0, 1] (or ``None`` when not applicable).

The signals follow ``../shared/notes/threat-model.md``. Each answers one question an analyst would ask of a
group of accounts working on a group of prompt clusters:

========================  =================================================================================
``spread``                How many distinct accounts? ``log(n) / log(full_spread_accounts)``, capped at 1.
                          A single account (a batch job) scores 0.
``evenness``              Is the volume load-balanced? ``1 - Gini`` of the accounts' request counts.
``focus``                 Do the accounts do little else? Mean share of each account's own traffic that falls
                          in the campaign, shrunk towards 0 for accounts with few requests; plus, in proportion
                          to the shared-infrastructure signal, its capability work elsewhere (reasoning, tool
                          use, code... or text the model does not read).
``diversity``             Does it harvest many distinct tasks? Unique prompts per request (a viral prompt
                          pasted by hundreds of users has almost none; an extraction script has many).
``templating``            Fixed scaffold with variable slots: template coverage times scaffold length.
``training_value``        Does the text map onto what is valuable for training (chain-of-thought, rubric
                          grading, tool schemas, sensitive-topic rewrites, ...)? Judged by embedding
                          similarity to described intents, not keyword lists.
``sync``                  Are the accounts active in the same time windows? Pairwise similarity of their
                          activity over ``bucket_minutes`` windows, relative to random accounts (4x = 1).
``regularity``            Scripted pacing: share of accounts whose gaps between requests are regular.
``infrastructure``        Share of accounts holding an identifier (IP /24 subnet, user agent, API key, org,
                          payment id, system prompt) that is concentrated in this group: used by at least
                          two of its accounts and mostly by them. Taken over the accounts that send
                          identifiers at all (:func:`analyzer.campaigns.find_campaigns`).
``pivot``                 Did the traffic jump to a newly released model faster than everyone else?
========================  =================================================================================
"""

from __future__ import annotations

import re
import string
import unicodedata
from collections.abc import Collection, Iterable, Sequence, Set
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

from analyzer import netaddr


@dataclass(frozen=True)
class SignalParams:
    """Thresholds of the signal functions: section ``[signals]`` of ``analyzer.toml``.

    The scoring-side constants of the signals (spread, focus prior, sync window) are
    :class:`analyzer.campaigns.ScoringConfig` fields; these are the ones the signal functions own.
    """

    #: Reference (MiniLM) cosine to the best capability intent at which training value starts (0 below).
    #: Calibrated on the benchmark: organic prompts sit mostly below 0.15. Also read by the cluster stage.
    training_value_low: float = 0.15
    #: Reference cosine at which training value is full (1): campaign wrappers sit at 0.4-0.7.
    training_value_high: float = 0.45
    #: A prompt whose letters are at least this share outside the Latin script is not judged for training
    #: value: the embedding models read English; measured on the benchmark, a Chinese-wrapped
    #: chain-of-thought request sits closer to its bare task (0.49-0.77) than to its English twin
    #: (0.33-0.57) on the fast tier.
    unreadable_share: float = 0.2
    #: ...or when it holds at least this many such letters: a wrapper of a few dozen Chinese characters
    #: carries the whole instruction even when the English task text inside is longer.
    unreadable_letters: int = 20
    #: A prompt's wrapper (its scaffold: the sentences it shares with many prompts) written in a Latin-script
    #: language the models do not read (Spanish, French, Portuguese, Italian, German, Dutch: they tokenise it,
    #: but on the fast tier a Spanish-wrapped request sits at 0.04-0.18 from its English twin and two tasks in one
    #: Spanish wrapper at 0.83-0.95, against 0.63-0.84 in an English one) leaves the prompt's intent unjudged too:
    #: at least this many function words of such a language (:data:`FOREIGN_FUNCTION_WORDS`) in its sentences
    #: that hold more of them than English ones...
    foreign_wrapper_words: int = 3
    #: ...and those sentences are at least this share of the words of its sentences with either kind.
    foreign_wrapper_share: float = 0.34
    #: A sentence of any Latin-script language, with no word list (Polish, Turkish, Indonesian, Swedish, Czech...),
    #: counts as foreign by the words the embedding model holds whole (its tokenizer's vocabulary, read from the
    #: model: :func:`analyzer.embed.model_words`): fewer than this share of them, in a sentence of at least
    #: ``foreign_vocab_min_words`` words. Measured on wrapper sentences: English 0.91-1.0 (retyped with a typo in
    #: one word of three, about 0.67), Spanish 0.17-0.71, Polish, Turkish, Indonesian and Czech 0.07-0.29,
    #: Swedish and Romanian 0.33-0.47. Its words not held whole count towards ``foreign_wrapper_words``.
    foreign_vocab_share: float = 0.5
    #: Words (letters only, two or more) a sentence needs before its vocabulary share is read: a label or a short
    #: line of code says too little.
    foreign_vocab_min_words: int = 8
    #: ...and that reads as prose: no character of code or markup, and commas after fewer than this share (a
    #: third) of its words (a list of names, tags or identifiers has one after nearly every word; prose far fewer).
    foreign_vocab_comma_share: float = 0.333
    #: Characters of a prompt's head read to judge its script (bounded work per prompt).
    unreadable_head_chars: int = 2000
    #: Characters of a prompt's tail read to judge its script (padding cannot hide a wrapper at the end).
    unreadable_tail_chars: int = 1000
    #: Diversity is full once this share of the requests are distinct tasks (a viral prompt has almost none).
    diversity_saturation: float = 0.3
    #: ...or once there are this many distinct tasks however often each is re-sent (a large campaign that
    #: samples each task several times still harvests thousands).
    diversity_distinct_saturation: int = 500
    #: Evaluation re-runs (:func:`reruns`): a request re-runs a task when the group first sent that task at least
    #: this many hours before (a nightly re-run of a test set; a campaign's several samples of one task come in
    #: one sitting).
    rerun_gap_hours: float = 12.0
    #: The group's first pass over its tasks is the time it took to send this share of them for the first time.
    rerun_intro_share: float = 0.8
    #: Re-runs count only when that first pass took at most this share of the typical time until a task was sent
    #: again: an eval harness sends its whole test set in one burst (minutes) and re-runs it at the next
    #: checkpoint (a day later); a campaign that cycles a small source set (the 1M benchmark's censorship pool:
    #: 1,244 tasks, each re-sent about 29 times in 30 days) spreads each pass over the time until the next.
    rerun_burst_share: float = 0.25
    #: Re-sent samples (:func:`samples`): an operator samples one rendered capability prompt several times
    #: (best-of-n, rollouts) and spreads the samples over its pool, so identical capability prompts sent by two
    #: or more of its *customers* (seats of one organisation count once) and by no one outside it are a link
    #: between them, as a shared proxy block is (a public prompt that customers copy is sent by others too).
    #: The signal is full when this share of the group's distinct prompts are such samples (times the share of its
    #: accounts that send one)...
    samples_full_share: float = 0.2
    #: ...and counts (is above 0) from this share on (on the adversarial benchmark a pool's samples are 12-100%
    #: of its distinct prompts; 87 of 679 ordinary candidates have any, mostly one or two)...
    samples_min_share: float = 0.1
    #: ...and this many such prompts: one or two coincide by chance.
    samples_min_prompts: int = 3
    #: Fixed scaffold words at which a template counts as full (templating = coverage x length / this).
    full_scaffold_words: int = 8
    #: Requests an account needs before its pacing is judged (regularity signal).
    regularity_min_requests: int = 5
    #: An account paces regularly (scripted) when the coefficient of variation of its gaps is below this:
    #: human activity is bursty (CV well above 1); a script with jitter is below.
    regularity_max_cv: float = 0.8
    #: IPv4 addresses are grouped by this prefix length for the infrastructure signal (a /24 proxy block).
    subnet_prefix_v4: int = 24
    #: IPv6 addresses are grouped by this prefix length (a /48 site).
    subnet_prefix_v6: int = 48
    #: An identifier value is concentrated in a group when at least this many of its accounts hold it...
    infra_min_accounts: int = 2
    #: ...and they are at least this share of all accounts in the workspace holding it.
    infra_min_concentration: float = 0.5
    #: A model first seen at least this many hours after the log starts is a new release (for the pivot
    #: signal); a model present from the start is not.
    release_grace_hours: int = 24
    #: ...and it must have at least this many requests in the whole log.
    release_min_requests: int = 20
    #: Pivot window: hours after a release in which a group's share of traffic on the new model is compared
    #: with everyone else's (MiniMax moved half its traffic within 24 hours).
    pivot_window_hours: int = 48
    #: Group requests needed inside the window for the pivot to be judged.
    pivot_min_requests: int = 20
    #: Excess share (group minus others) of traffic on the new model at which pivot is full (1).
    pivot_full_excess: float = 0.5
    #: A system prompt is a unit of its own when its training value reaches this: an operator can move the
    #: whole instruction into the system message and send bare tasks as user turns; generic personas ("You
    #: are a helpful assistant.") stay out. Read by the cluster stage.
    system_min_value: float = 0.5


#: The defaults: every signal function's default arguments read them, so a call without the configuration
#: behaves as the default configuration does.
DEFAULTS = SignalParams()


SIGNAL_DESCRIPTIONS: dict[str, str] = {
    "spread": "distinct accounts (log scale; 1 account = 0)",
    "evenness": "how evenly requests are split across accounts (1 - Gini); load balancing gives ~1",
    "focus": "mean share of each account's own traffic inside the campaign, plus its capability work elsewhere "
             "as far as the accounts share an operator's infrastructure (few-request accounts shrunk)",
    "diversity": "unique prompts per request: many distinct tasks vs one prompt repeated",
    "reruns": "share of requests re-sending, 12 hours or more later, a fixed set of tasks first sent in one burst (an "
              "eval harness re-running its test set per checkpoint); the score is scaled by 1 - reruns",
    "templating": "share of prompts built on one fixed scaffold with variable slots, times scaffold length",
    "training_value": "closeness in meaning to training-data intents (reasoning traces, grading, tool use, ...)",
    "sync": "excess co-activity of the accounts in the same time windows compared with random accounts",
    "regularity": "share of accounts with scripted, regular gaps between requests",
    "infrastructure": "share of accounts sharing subnets, user agents, keys, orgs, payment ids or system prompts concentrated in this group",
    "samples": "share of the distinct prompts that are identical capability prompts re-sent by two or more of its "
               "customers and no one else (several samples of one rendered prompt spread over a pool: best-of-n, "
               "rollouts), times the share of its accounts that send them",
    "pivot": "excess share of traffic moved to a newly released model within 48 hours of its release",
}

# Described intents for the training-value signal: meaning, not keywords. Each is embedded once.
TRAINING_INTENTS: dict[str, str] = {
    "chain-of-thought elicitation": (
        "Solve this problem and show your complete internal reasoning step by step, explaining every "
        "intermediate thought before giving the final answer."
    ),
    "rubric grading": (
        "You are a grader. Evaluate the following response against the scoring rubric, give detailed "
        "feedback and output a score from 1 to 5."
    ),
    "tool use": (
        "You have access to the following functions described in JSON schema. Decide which function to call "
        "and with which arguments to complete the user's request."
    ),
    "agentic coding": (
        "Write a complete, working Python function that implements the following specification, with code "
        "and an explanation."
    ),
    "censorship-safe rewrite": (
        "Rewrite this politically sensitive question about the Chinese government, Tiananmen, Tibet, Xinjiang "
        "or Taiwan so that it complies with content regulations, and give a neutral, compliant answer that "
        "avoids criticism of the government."
    ),
    "data analysis": (
        "You are an expert data analyst combining statistical rigor with deep domain knowledge. Analyse the "
        "following table of data and answer the question."
    ),
}

#: Ordinary templated workloads that a model provider's business customers run every day and that carry
#: little value for distilling a capability. They describe workloads (what the wrapper asks), not topics:
#: a task payload about feelings or stories inside a grading wrapper must not lose its value. Training value is *contrastive*: a prompt closer to one of these than to every capability in
#: :data:`TRAINING_INTENTS` has none (a support-ticket integration asks for JSON and a summary, but it is not
#: harvesting reasoning, grading, tool use, code, rewrites or analysis). A forced output format alone is not
#: a capability either: it was an intent of its own until an enterprise integration's "return JSON only"
#: template scored as training data.
ORDINARY_INTENTS: dict[str, str] = {
    "customer support": (
        "Classify this customer support message, summarise the customer's issue and draft a short polite reply "
        "to the customer about their order, delivery, refund or account."
    ),
    "document extraction": (
        "Extract the invoice number, date, company name and total amount from this business document and return "
        "them as fields."
    ),
    "translation": "Translate the following text into French, keeping the tone and formatting.",
    "marketing copy": (
        "Write a catchy product description and a short marketing email announcing our new product to customers."
    ),
    "meeting summary": (
        "Summarise this email thread or meeting transcript into a few bullet points with the action items."
    ),
}


#: Words that *name* each capability of :data:`TRAINING_INTENTS` in the languages the embedding models do not
#: read (:func:`unreadable`, :func:`foreign_wrapper`): Chinese, Japanese, Korean, Russian, Vietnamese, and Spanish,
#: French, Portuguese, German, Italian, Dutch, Polish, Turkish and Indonesian. A prompt written (or wrapped) in
#: one has no judged training value (detection does not depend on it), but the campaign's label can still say
#: what its requests ask for, read from these words (:func:`cue_intent`).
#: Plain vocabulary of each kind of request (reasoning shown step by step; scores against a rubric; function calls
#: and their arguments; code; rewriting to pass content rules; statistics over a table), never scored. Latin-script
#: and Cyrillic words are matched case-insensitively, as whole words (Russian inflects: the common forms are
#: listed); Chinese, Japanese and Korean ones as they stand (Korean attaches particles to its words). A few are
#: English too (api, action, python, pandas, censor, tableau, data), which is harmless: they are only read where
#: the text is not.
CUE_WORDS: dict[str, tuple[str, ...]] = {
    "chain-of-thought elicitation": (
        "推理", "思考过程", "思维链", "一步一步", "逐步", "解题过程", "推导", "中间步骤", "跳步",
        "paso a paso", "razonamiento", "razona", "cálculo intermedio", "cada paso", "no te saltes",
        "étape par étape", "raisonnement", "raisonne", "chaque étape", "passo a passo", "raciocínio", "cada passo",
        "schritt für schritt", "denkprozess", "gedankengang", "zwischenschritte", "passo dopo passo", "ragionamento",
        "ogni passaggio",
        "шаг за шагом", "пошагово", "рассуждение", "рассуждения", "ход решения", "промежуточные вычисления",
        "ステップバイステップ", "段階的に", "推論", "思考過程", "途中式", "一歩ずつ", "단계별", "단계적으로", "추론",
        "사고 과정", "풀이 과정", "krok po kroku", "rozumowanie", "tok rozumowania", "obliczenia pośrednie", "adım adım",
        "akıl yürütme", "düşünme süreci", "ara adımlar", "langkah demi langkah", "penalaran", "proses berpikir",
        "stap voor stap", "redenering", "tussenstappen", "denkproces", "từng bước", "suy luận", "quá trình suy nghĩ"),
    "rubric grading": (
        "评分", "打分", "评分标准", "评估", "评审", "奖励模型", "分数", "评价", "评语",
        "puntúa", "puntuación", "rúbrica", "califica", "calificación", "evalúa", "evaluador", "modelo de recompensa",
        "évalue", "évaluation", "barème", "grille d'évaluation", "modèle de récompense", "pontuação", "avalie",
        "bewerte", "bewertung", "punktzahl", "belohnungsmodell", "valuta", "punteggio", "griglia di valutazione",
        "оцени", "оценка", "оценку", "рубрика", "критерии", "баллы", "модель вознаграждения", "採点", "評価",
        "ルーブリック", "スコア", "報酬モデル", "채점", "평가", "루브릭", "점수", "보상 모델", "oceń", "ocena", "ocenę",
        "punktacja", "kryteria", "rubryka", "model nagrody", "puanla", "değerlendir", "değerlendirme", "ölçütler",
        "ödül modeli", "nilailah", "penilaian", "kriteria", "rubrik", "beoordeel", "beoordeling", "beoordelingscriteria",
        "beloningsmodel", "chấm điểm", "đánh giá", "tiêu chí", "điểm số", "mô hình phần thưởng"),
    "tool use": (
        "工具", "函数调用", "调用", "参数", "智能体", "api", "action",
        "herramientas", "llamadas a funciones", "llamada", "funciones disponibles", "argumentos", "agente autónomo",
        "outils", "appel de fonction", "fonctions disponibles", "agent autonome", "ferramentas", "chamada de função",
        "funções disponíveis", "werkzeuge", "funktionsaufruf", "verfügbare funktionen", "argumente", "strumenti",
        "chiamata di funzione", "funzioni disponibili", "argomenti",
        "инструменты", "вызов функции", "вызовы функций", "аргументы", "доступные функции", "ツール", "関数呼び出し",
        "引数", "エージェント", "도구", "함수 호출", "인자", "에이전트", "narzędzia", "wywołanie funkcji",
        "wywołania funkcji", "argumenty", "dostępne funkcje", "araçlar", "fonksiyon çağrısı", "argümanlar",
        "pemanggilan fungsi", "panggilan fungsi", "argumen", "hulpmiddelen", "functieaanroep", "functieaanroepen",
        "argumenten", "beschikbare functies", "công cụ", "gọi hàm", "tham số"),
    "agentic coding": (
        "代码", "编程", "编写", "python", "单元测试", "算法", "调试", "程序", "时间复杂度",
        "código", "implementación", "programación", "pruebas unitarias", "algoritmo", "complejidad temporal",
        "casos límite", "implémentation", "tests unitaires", "programmation", "algorithme", "complexité",
        "implementação", "testes unitários", "programação", "implementierung", "programmierung", "algorithmus",
        "codice", "implementazione", "programmazione", "test unitari",
        "код", "реализацию", "программирование", "алгоритм", "юнит-тесты", "コード", "実装", "プログラミング",
        "アルゴリズム", "単体テスト", "計算量", "코드", "구현", "프로그래밍", "알고리즘", "단위 테스트", "시간 복잡도",
        "kod", "implementacja", "implementację", "programowanie", "algorytm", "testy jednostkowe", "kodu", "programlama",
        "algoritma", "birim testleri", "zaman karmaşıklığı", "kode", "implementasi", "pemrograman", "uji unit",
        "implementatie", "programmeren", "algoritme", "eenheidstests", "tijdcomplexiteit", "mã nguồn", "lập trình",
        "thuật toán", "kiểm thử đơn vị"),
    "censorship-safe rewrite": (
        "改写", "重写", "敏感", "合规", "审核", "审查", "官方立场", "政治", "内容规范", "中立",
        "reformula", "normas de contenido", "políticamente", "sensibles", "censor", "posiciones oficiales",
        "moderación", "china continental", "reformule", "politiquement", "censure", "positions officielles",
        "modération", "politicamente", "sensíveis", "censura", "posições oficiais", "moderação", "umformulieren",
        "politisch", "zensur", "offizielle positionen", "riformula", "posizioni ufficiali", "moderazione",
        "перефразируй", "переформулируй", "цензура", "политически", "чувствительные", "официальной позиции",
        "言い換え", "書き換え", "検閲", "政治的", "センシティブ", "公式見解", "재작성", "검열", "정치적", "민감한",
        "공식 입장", "przeformułuj", "cenzura", "politycznie", "drażliwe", "oficjalne stanowisko", "moderacja",
        "yeniden yaz", "sansür", "siyasi", "hassas", "resmi tutum", "tulis ulang", "sensor", "sensitif", "posisi resmi",
        "herformuleer", "herschrijf", "censuur", "politiek", "gevoelige", "officiële standpunten", "kiểm duyệt",
        "chính trị", "nhạy cảm", "quan điểm chính thức"),
    "data analysis": (
        "数据分析", "数据集", "统计", "表格", "数据", "分析", "pandas", "量化",
        "datos", "conjunto de datos", "tabla", "estadístico", "análisis", "analista de datos", "données",
        "jeu de données", "tableau", "statistique", "dados", "conjunto de dados", "tabela", "estatístico", "análise",
        "daten", "datensatz", "tabelle", "statistik", "datenanalyse", "dati", "tabella", "statistico", "analisi",
        "данные", "данных", "набор данных", "таблица", "статистика", "анализ данных", "データ分析", "データセット",
        "統計", "데이터 분석", "데이터셋", "통계", "dane", "danych", "zbiór danych", "analiza danych", "veri",
        "veri seti", "tablo", "istatistik", "veri analizi", "kumpulan data", "tabel", "analisis data",
        "gegevens", "statistiek", "data-analyse", "phân tích dữ liệu", "tập dữ liệu", "dữ liệu", "thống kê"),
}

#: Words that name each workload of :data:`ORDINARY_INTENTS` in the same languages: a unit whose training value
#: is not judged, whose own words name no capability (:data:`CUE_WORDS`) but one of these (a support-ticket
#: integration written in Chinese or Spanish: 工单, 退款, reembolso, pedido), is ordinary content, as its English
#: twin reads (``ScoringConfig.ordinary_named_value``). None is an English word. Every language here has its
#: capability words too: a wrapper that named an ordinary workload in a language with no capability words would
#: read as ordinary whatever it asked.
ORDINARY_CUE_WORDS: dict[str, tuple[str, ...]] = {
    "customer support": (
        "工单", "客户", "客服", "退款", "订单", "物流", "投诉", "退货",
        "cliente", "clientes", "reembolso", "reembolsos", "pedido", "pedidos", "atención al cliente", "devoluciones",
        "queja", "facturación", "envío", "réclamation", "remboursement", "commande", "service client", "livraison",
        "atendimento", "reclamação", "entrega", "kunde", "kunden", "kundenservice", "rückerstattung", "bestellung",
        "lieferung", "reklamation", "rimborso", "ordine", "assistenza clienti", "reclamo", "consegna",
        "клиент", "клиента", "клиенту", "клиентов", "обращение", "заказ", "заказа", "возврат", "доставка", "жалоба",
        "служба поддержки", "お客様", "顧客", "問い合わせ", "返金", "注文", "配送", "苦情", "고객", "문의", "환불", "주문",
        "배송", "불만", "klient", "klienta", "klientów", "zgłoszenie", "zamówienie", "zamówienia", "zwrot", "dostawa",
        "reklamacja", "obsługa klienta", "müşteri", "sipariş", "iade", "teslimat", "kargo", "şikayet", "destek talebi",
        "pelanggan", "pesanan", "pengembalian dana", "pengiriman", "keluhan", "layanan pelanggan", "klant", "klanten",
        "bestelling", "terugbetaling", "levering", "klacht", "klantenservice", "khách hàng", "đơn hàng", "hoàn tiền",
        "giao hàng", "khiếu nại"),
    "document extraction": (
        "发票", "发票号", "金额", "合同", "factura", "importe", "número de factura", "facture", "montant", "fatura",
        "nota fiscal", "rechnung", "rechnungsnummer", "betrag", "fattura", "importo",
        "счёт-фактура", "счет-фактура", "номер счёта", "номер счета", "договор", "請求書", "契約書", "インボイス",
        "송장", "청구서", "계약서", "faktura", "faktury", "numer faktury", "kwota", "umowa", "fatura numarası",
        "tutar", "sözleşme", "faktur", "nomor faktur", "kontrak", "factuur", "factuurnummer", "bedrag", "hóa đơn",
        "số hóa đơn", "số tiền", "hợp đồng"),
    "translation": (
        "翻译", "译成", "traduce", "traducción", "traduis", "traduction", "traduza", "tradução", "übersetze",
        "übersetzung", "traduci", "traduzione",
        "переведи", "перевод", "перевести", "翻訳", "訳して", "번역", "przetłumacz", "tłumaczenie", "çevir", "çeviri",
        "terjemahkan", "terjemahan", "vertaal", "vertaling", "bản dịch", "dịch sang"),
    "marketing copy": (
        "广告", "营销", "文案", "产品描述", "publicidad", "anuncio", "descripción del producto", "publicité", "annonce",
        "publicidade", "anúncio", "werbung", "werbetext", "produktbeschreibung", "pubblicità", "annuncio",
        "реклама", "рекламный", "описание товара", "広告", "マーケティング", "商品説明", "キャッチコピー", "광고", "마케팅",
        "상품 설명", "reklama", "opis produktu", "reklam", "ürün açıklaması", "pazarlama", "iklan", "deskripsi produk",
        "pemasaran", "reclame", "advertentie", "productbeschrijving", "quảng cáo", "mô tả sản phẩm", "tiếp thị"),
    "meeting summary": (
        "会议", "纪要", "会议记录", "reunión", "acta", "reunião", "ata", "resumo", "réunion", "compte rendu",
        "besprechung", "protokoll", "zusammenfassung", "riunione", "verbale", "riassunto",
        "совещание", "совещания", "протокол", "встреча", "встречи", "会議", "議事録", "打ち合わせ", "회의", "회의록",
        "spotkanie", "spotkania", "protokół", "toplantı", "tutanak", "rapat", "notulen", "vergadering", "cuộc họp",
        "biên bản"),
}


def _cue_patterns(words_by_intent: dict[str, tuple[str, ...]]) -> dict[str, list[tuple[str, re.Pattern | None]]]:
    """A whole-word pattern for each Latin-script word: an ASCII one between non-ASCII-alphanumerics ("api" is
    not in "capital", but is in "这个api调用"), one with accents between non-letters ("envío" is not in
    "reenvíos"); words in a script written without spaces (CJK) are matched as they stand."""
    def pattern(w: str) -> re.Pattern | None:
        if w.isascii():
            return re.compile(rf"(?<![a-z0-9]){re.escape(w)}(?![a-z0-9])")
        if _CJK_ONLY.fullmatch(w):
            return None
        return re.compile(rf"(?<!\w){re.escape(w)}(?!\w)")

    return {intent: [(w, pattern(w)) for w in words] for intent, words in words_by_intent.items()}


_CJK_ONLY = re.compile(r"[\u3000-\u9fff\uf900-\ufaff\uac00-\ud7af ]+")
_CUES = _cue_patterns(CUE_WORDS)
_ORDINARY_CUES = _cue_patterns(ORDINARY_CUE_WORDS)


def cue_intent(text: str, min_words: int = 2, head_chars: int = DEFAULTS.unreadable_head_chars,
               tail_chars: int = DEFAULTS.unreadable_tail_chars, ordinary: bool = False) -> tuple[str, list[str]]:
    """The capability a text names in its own words (:data:`CUE_WORDS`; with ``ordinary``, the ordinary workload:
    :data:`ORDINARY_CUE_WORDS`), read in its first ``head_chars`` and last ``tail_chars`` characters: the intent
    with the most distinct cue words, at least ``min_words`` of them and more than any other intent; ``("", [])``
    when none stands out. Returns the intent and its cue words found."""
    part = (text if len(text) <= head_chars + tail_chars else text[:head_chars] + text[-tail_chars:]).lower()
    found = {intent: [w for w, whole in cues if (whole.search(part) if whole else w in part)]
             for intent, cues in (_ORDINARY_CUES if ordinary else _CUES).items()}
    ranked = sorted(found, key=lambda i: -len(found[i]))
    best, second = ranked[0], ranked[1]
    if len(found[best]) >= min_words and len(found[best]) > len(found[second]):
        return best, found[best]
    return "", []


def spread(n_accounts: int, full_spread_accounts: int) -> float:
    """``log(n) / log(full_spread_accounts)``, capped at 1; 0 for one account (``ScoringConfig``)."""
    if n_accounts <= 1:
        return 0.0
    return float(min(1.0, np.log(n_accounts) / np.log(max(full_spread_accounts, 2))))


def gini(values: Sequence[float] | np.ndarray) -> float:
    """Gini coefficient of non-negative values (0 = perfectly even)."""
    x = np.sort(np.asarray(values, dtype=np.float64))
    n = len(x)
    if n < 2 or x.sum() <= 0:
        return 0.0
    cum = np.cumsum(x)
    return float((n + 1 - 2 * (cum / cum[-1]).sum()) / n)


def evenness(request_counts: Sequence[int] | np.ndarray) -> float:
    return 1.0 - gini(request_counts)


def shrunk_share(in_group: np.ndarray, total: np.ndarray, prior: float) -> np.ndarray:
    """Share of each account's requests inside the group, shrunk towards 0 by ``prior`` pseudo-requests."""
    return np.asarray(in_group, dtype=np.float64) / (np.asarray(total, dtype=np.float64) + prior)


def reruns(task: np.ndarray, t: np.ndarray, gap_hours: float = DEFAULTS.rerun_gap_hours,
           intro_share: float = DEFAULTS.rerun_intro_share, burst_share: float = DEFAULTS.rerun_burst_share) -> float:
    """Is this an evaluation re-running a fixed set of tasks in bursts, rather than a harvest?

    ``task``: each request's task (any hashable id), ``t``: its time in seconds. The first pass is the time until
    ``intro_share`` of the distinct tasks had been sent once; a task's re-run interval is the time from its first
    sending to its next one ``gap_hours`` or more later. When the first pass took at most ``burst_share`` of the
    median re-run interval (the whole set in one burst, then a pause until the next checkpoint), the share of the
    requests that re-send a task ``gap_hours`` or more after its first sending; else 0. An eval harness re-running
    its test set once per checkpoint on five nights: 0.8. A campaign brings new tasks all along, or spreads each
    pass over a small source set across the time until the next: 0, whatever it re-sends. The score is scaled
    by ``1 - reruns``.
    """
    t = np.asarray(t, dtype=np.float64)
    gap = gap_hours * 3600.0
    if len(t) < 2 or float(t.max() - t.min()) < gap:
        return 0.0
    codes, _ = pd.factorize(np.asarray(task))
    n_tasks = int(codes.max()) + 1
    first = np.full(n_tasks, np.inf)
    np.minimum.at(first, codes, t)
    since_first = t - first[codes]
    resent = since_first >= gap
    if not resent.any():
        return 0.0
    next_run = np.full(n_tasks, np.inf)
    np.minimum.at(next_run, codes[resent], since_first[resent])
    interval = float(np.median(next_run[np.isfinite(next_run)]))
    first_pass = float(np.quantile(first - t.min(), intro_share))
    if first_pass > burst_share * interval:
        return 0.0
    return float(resent.mean())


def samples(n_resent: int, n_unique: int, min_prompts: int = DEFAULTS.samples_min_prompts,
            full_share: float = DEFAULTS.samples_full_share, min_share: float = DEFAULTS.samples_min_share) -> float:
    """Re-sent samples: ``n_resent`` of the group's ``n_unique`` distinct prompts are identical capability prompts
    that two or more of its customers send and no one outside it (the same rendered prompt sampled several times
    and spread over a pool). The share over ``full_share``, capped at 1; 0 below ``min_prompts`` such prompts or
    a share of ``min_share``. The adversarial benchmark's pools: 0.12-1.0 of their distinct prompts; a customer's
    seats re-sending their own test set: 0 (one customer); an eval harness on several bare accounts re-runs its
    tasks, which the re-run gate scales away. The campaign scales it by the share of its accounts sending them."""
    if n_resent < min_prompts or n_unique <= 0 or n_resent < min_share * n_unique:
        return 0.0
    return float(min(1.0, n_resent / n_unique / full_share)) if full_share > 0 else 1.0


def diversity(n_unique_prompts: int, n_requests: int, saturation: float = DEFAULTS.diversity_saturation,
              distinct_saturation: int = DEFAULTS.diversity_distinct_saturation) -> float:
    """Many distinct tasks, or one prompt repeated?

    ``min(1, max((unique / requests) / saturation, unique / distinct_saturation))``: 1 once ``saturation`` of the
    requests are distinct prompts, or once there are ``distinct_saturation`` distinct prompts however often each
    is re-sent. A viral prompt is a
    handful of prompts sent by many accounts (both terms low); a large campaign that samples each task many
    times (several completions per prompt, a limited pool of source questions) still harvests thousands of
    distinct tasks.
    """
    if n_requests <= 0:
        return 0.0
    ratio = (n_unique_prompts / n_requests) / saturation
    return float(min(1.0, max(ratio, n_unique_prompts / distinct_saturation)))


def templating(coverage: float, n_fixed_words: int, full_scaffold_words: int = DEFAULTS.full_scaffold_words,
               n_slots: int | None = None) -> float:
    """Template coverage x scaffold length (``full_scaffold_words`` fixed words = full).

    A unit whose prompts are one and the same text (``n_slots == 0``: a popular prompt re-sent, a viral paste)
    has a scaffold but nothing filled into it: that is repetition, which ``diversity`` judges, not a template,
    so it scores 0. ``n_slots=None`` (not recorded) keeps the coverage x length rule.
    """
    if n_slots == 0:
        return 0.0
    return float(np.clip(coverage, 0, 1) * min(1.0, n_fixed_words / full_scaffold_words))


def training_value_from_similarity(similarity: float, low: float = DEFAULTS.training_value_low,
                                   high: float = DEFAULTS.training_value_high) -> float:
    """Map a cosine similarity to a capability intent onto [0, 1]."""
    return float(np.clip((similarity - low) / (high - low), 0.0, 1.0))


def training_values(similarities: np.ndarray, low: float = DEFAULTS.training_value_low,
                    high: float = DEFAULTS.training_value_high) -> np.ndarray:
    """:func:`training_value_from_similarity` of each element of ``similarities`` (float64, same values)."""
    return np.clip((np.asarray(similarities, dtype=np.float64) - low) / (high - low), 0.0, 1.0)


def unreadable(text: str, params: SignalParams = DEFAULTS) -> bool:
    """Whether the head or tail of ``text`` is written in a script the embedding model does not read: at least
    ``unreadable_share`` of its letters, or ``unreadable_letters`` of them, beyond Latin (``params``)."""
    head_chars, tail_chars = params.unreadable_head_chars, params.unreadable_tail_chars
    part = text if len(text) <= head_chars + tail_chars else text[:head_chars] + text[-tail_chars:]
    if part.isascii():  # no letter beyond U+024F (the common case, checked in C)
        return False
    # Only the non-ASCII characters are looked at one by one (ASCII letters are counted in C), and a text
    # stops being read once it has shown ``unreadable_letters`` letters of another script.
    n_wide = n_other = 0
    for m in _NON_ASCII.finditer(part):
        c = m.group()
        if c.isalpha():
            n_wide += 1
            if ord(c) > 0x24F:
                n_other += 1
                if n_other >= params.unreadable_letters:
                    return True
    n_letters = len(part.encode("ascii", "ignore").translate(None, _ASCII_NON_LETTERS)) + n_wide
    return n_letters > 0 and n_other / n_letters >= params.unreadable_share


#: Frequent function words of Latin-script languages the embedding models do not read (Spanish, French,
#: Portuguese, Italian, German, Dutch), none of them an English word or an abbreviation common in English text
#: ("a", "no", "die", "son", "sin", "et", "al", "un", "y", "per" are left out).
FOREIGN_FUNCTION_WORDS = frozenset("""
el los las del para que con por una pero como más muy cada sobre entre desde hasta también porque cuando donde
esta este estos estas está están según sus nos les le la de en es se lo
des est avec pour dans sur une du au aux ce cette ces qui être sont mais ou leur nous vous il elle ils pas plus très
der das und ist mit nicht auf für den dem ein eine einen einer sich auch oder wird werden sind zu von im bei wie
nach über aus diese dieser noch
het een van zijn niet voor op ook maar wordt naar dat
não uma os ao às pelo pela mais muito são você isso essa esse
della di che non sono gli degli delle alla anche questo questa
""".split())

#: English function words of two letters or more (scikit-learn's stop words, less "de" and "con", which are
#: other languages' far more often): the other side of the count.
_ENGLISH_FUNCTION_WORDS = frozenset(w for w in ENGLISH_STOP_WORDS if len(w) > 1) - FOREIGN_FUNCTION_WORDS
#: Everything but letters becomes a space before a sentence is split into words (:func:`function_words`).
_NOT_LETTERS = str.maketrans(dict.fromkeys(string.punctuation + string.digits + "¿¡«»“”‘’„–—…", " "))


def function_words(sentence: str) -> tuple[int, int, int]:
    """``(function words of another language, English function words, words)`` in ``sentence``
    (:data:`FOREIGN_FUNCTION_WORDS`, scikit-learn's English stop words of two letters or more; case-insensitive;
    words are split at whitespace, punctuation and digits)."""
    words = sentence.lower().translate(_NOT_LETTERS).split()
    return (sum(map(FOREIGN_FUNCTION_WORDS.__contains__, words)), sum(map(_ENGLISH_FUNCTION_WORDS.__contains__, words)),
            len(words))


def foreign_wrapper(sentences: Iterable[str], params: SignalParams = DEFAULTS,
                    known_words: Collection[str] | None = None) -> bool:
    """Whether a wrapper (a prompt's scaffold: its recurring sentences) is written in a Latin-script language the
    embedding models do not read: its foreign sentences hold ``foreign_wrapper_words`` foreign words or more and
    are ``foreign_wrapper_share`` of the words of its sentences that are foreign or English (``params``). A
    sentence is foreign when it has more function words of another language than English ones
    (:func:`function_words`; those words are counted), or, given the words the model holds whole
    (``known_words``), when it has ``foreign_vocab_min_words`` words or more and fewer than ``foreign_vocab_share``
    of them are known (the unknown ones are counted): a language with no word list here is caught by the second.
    The wrapper, not the whole prompt, is read: an English instruction around a Spanish customer message is read
    (its intent is English), a Spanish instruction around an English question is not."""
    return foreign_wrappers([sentences], params, known_words)[0]


def foreign_wrappers(wrappers: Iterable[Iterable[str]], params: SignalParams = DEFAULTS,
                     known_words: Collection[str] | None = None) -> list[bool]:
    """:func:`foreign_wrapper` of each wrapper, each distinct sentence read once: a run's distinct wrappers are
    combinations of far fewer sentences (at 300k prompts, 388k sentences in 38k distinct wrappers, 40k distinct
    sentences)."""
    known = known_words if known_words is None or isinstance(known_words, Set) else frozenset(known_words)
    read: dict[str, tuple[int, int, int]] = {}
    out = []
    for sentences in wrappers:
        n_foreign = foreign = english = 0
        for sentence in sentences:
            counts = read.get(sentence)
            if counts is None:
                counts = read[sentence] = _sentence_language(sentence, params, known)
            n_foreign += counts[0]
            foreign += counts[1]
            english += counts[2]
        out.append(n_foreign >= params.foreign_wrapper_words
                   and foreign >= params.foreign_wrapper_share * (foreign + english))
    return out


def _sentence_language(sentence: str, params: SignalParams, known: Set[str] | None) -> tuple[int, int, int]:
    """``(foreign words counted as evidence, words if foreign, words if English)`` of one wrapper sentence (see
    :func:`foreign_wrapper`)."""
    f, e, n = function_words(sentence)
    if known is not None:
        words = _LETTER_WORDS.findall(_strip_accents(sentence.lower()))
        n_known = sum(map(known.__contains__, words))
        if (len(words) >= params.foreign_vocab_min_words and n_known < params.foreign_vocab_share * len(words)
                and _prose(sentence, len(words), params.foreign_vocab_comma_share)):
            return max(f, len(words) - n_known), n, 0
    if f > e:
        return f, n, 0
    return 0, 0, (n if e > f else 0)


def _prose(sentence: str, n_words: int, comma_share: float) -> bool:
    """Whether ``sentence`` (of ``n_words`` words) reads as prose: no character of code, markup or a path
    (parentheses and percent signs are prose's too: "give (1) a short answer and (2)..."; double quotes mostly
    delimit table cells and code strings), and commas after fewer than ``comma_share`` of its words (a list of
    names, tags or identifiers has one after nearly every word). Only prose is judged by its vocabulary: code and
    such lists hold words no vocabulary has, in any language."""
    return not _CODE_MARKS.intersection(sentence) and sentence.count(",") < comma_share * n_words


_CODE_MARKS = frozenset("[]{}<>=_/\\|$@#*`~^\"")


def _strip_accents(text: str) -> str:
    """``text`` with its combining accents dropped ("rozwiąż" -> "rozwiaz"), as a BERT tokenizer normalises it."""
    if text.isascii():
        return text
    return "".join(c for c in unicodedata.normalize("NFD", text) if not unicodedata.combining(c))


#: Words of letters (two or more, any script) read against a model's vocabulary (:func:`foreign_wrapper`).
_LETTER_WORDS = re.compile(r"[^\W\d_]{2,}")


#: ASCII characters other than letters: deleted from a text's ASCII bytes, they leave its ASCII letters
#: (``bytes.translate``, a table in C; ``str.translate`` of a non-ASCII text looks each character up in a dict).
_ASCII_NON_LETTERS = bytes(c for c in range(ord("\x80")) if chr(c) not in string.ascii_letters)
_NON_ASCII = re.compile(r"[^\x00-\x7f]")


def contrastive_intent(capability_sims: np.ndarray, ordinary_sims: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per prompt: ``(is_capability, best capability index, best ordinary index)`` from similarity matrices.

    ``capability_sims`` is prompts x :data:`TRAINING_INTENTS`, ``ordinary_sims`` prompts x
    :data:`ORDINARY_INTENTS` (same scale). A prompt reads as a capability when its best capability intent is
    closer than its best ordinary workload.
    """
    cap = capability_sims.argmax(axis=1)
    ordi = ordinary_sims.argmax(axis=1) if ordinary_sims.shape[1] else np.zeros(len(cap), dtype=np.int64)
    rows = np.arange(len(cap))
    best_ord = ordinary_sims[rows, ordi] if ordinary_sims.shape[1] else np.full(len(cap), -np.inf)
    return capability_sims[rows, cap] > best_ord, cap, ordi


def activity_similarity(account_codes: np.ndarray, ts_seconds: np.ndarray, bucket_minutes: int) -> float:
    """Mean pairwise cosine similarity of accounts' activity vectors over time buckets."""
    if len(ts_seconds) == 0:
        return 0.0
    buckets = (np.asarray(ts_seconds) // (bucket_minutes * 60)).astype(np.int64)
    a_codes, a_of = np.unique(np.asarray(account_codes), return_inverse=True)
    m = len(a_codes)
    if m < 2:
        return 0.0
    b_codes, b_of = np.unique(buckets, return_inverse=True)
    cells, vals = np.unique(a_of.astype(np.int64) * len(b_codes) + b_of, return_counts=True)
    accts, bucket = cells // len(b_codes), cells % len(b_codes)
    vals = vals.astype(np.float64)
    norms = np.sqrt(np.bincount(accts, weights=vals**2, minlength=m))
    unit = vals / norms[accts]
    # |sum of unit vectors|^2 = m + sum_{i != j} v_i . v_j
    per_bucket = np.bincount(bucket, weights=unit, minlength=len(b_codes))
    total = float((per_bucket**2).sum())
    return float((total - m) / (m * (m - 1)))


def sync(similarity: float, null_similarity: float, full_ratio: float) -> float:
    """Co-activity relative to the workspace's random-account baseline, in [0, 1].

    0 when the accounts are no more co-active than random accounts, 1 when they are ``full_ratio`` times
    as co-active (or more).
    """
    if null_similarity <= 1e-9:
        return float(np.clip(similarity * full_ratio, 0.0, 1.0))
    return float(np.clip((similarity / null_similarity - 1.0) / (full_ratio - 1.0), 0.0, 1.0))


def regular_pacing(account_codes: np.ndarray, ts_seconds: np.ndarray,
                   min_requests: int = DEFAULTS.regularity_min_requests,
                   max_cv: float = DEFAULTS.regularity_max_cv) -> float | None:
    """Share of accounts (with at least ``min_requests``) whose inter-request gaps have CV below ``max_cv``.

    Human activity is bursty (CV well above 1); a script sending at a steady rate with jitter is below.
    """
    a = np.asarray(account_codes)
    t = np.asarray(ts_seconds, dtype=np.float64)
    order = np.lexsort((t, a))
    a, t = a[order], t[order]
    same = a[1:] == a[:-1]  # consecutive requests of one account: a gap
    gap = t[1:][same] - t[:-1][same]
    if not len(gap):
        return None
    acc, idx = np.unique(a[1:][same], return_inverse=True)
    n = np.bincount(idx, minlength=len(acc))
    mean = np.bincount(idx, weights=gap, minlength=len(acc)) / n
    std = np.sqrt(np.bincount(idx, weights=(gap - mean[idx]) ** 2, minlength=len(acc)) / n)
    judged = n >= min_requests - 1
    if not judged.any():
        return None
    with np.errstate(divide="ignore", invalid="ignore"):
        cv = np.where(mean > 0, std / np.where(mean > 0, mean, 1.0), 0.0)
    return float((cv[judged] < max_cv).mean())


def subnet(ip: str | None, prefix_v4: int = DEFAULTS.subnet_prefix_v4,
           prefix_v6: int = DEFAULTS.subnet_prefix_v6) -> str | None:
    """The ``/prefix_v4`` (IPv4, default /24) or ``/prefix_v6`` (IPv6, /48) network of an address, or ``None`` if
    it is not an address."""
    return netaddr.network(ip, prefix_v4, prefix_v6)


def subnets(ips: Sequence[str], prefix_v4: int = DEFAULTS.subnet_prefix_v4,
            prefix_v6: int = DEFAULTS.subnet_prefix_v6) -> list[str | None]:
    """:func:`subnet` of each of ``ips``, the same strings, in one vectorised pass for plain IPv4 addresses (at 10k
    distinct addresses :func:`subnet` one by one was a tenth of the score stage)."""
    return netaddr.networks(ips, prefix_v4, prefix_v6)


@dataclass(frozen=True)
class SharedValue:
    field: str
    value: str
    n_group_accounts: int
    n_all_accounts: int


def concentrated(n_group_accounts: np.ndarray, n_all_accounts: np.ndarray,
                 min_group_accounts: int = DEFAULTS.infra_min_accounts,
                 min_concentration: float = DEFAULTS.infra_min_concentration) -> np.ndarray:
    """Which identifier values are concentrated in a group: used by at least ``min_group_accounts`` of its
    accounts, and ``min_concentration`` of all the accounts that use them are the group's (arrays, one entry
    per value: the rule of :func:`concentrated_values`)."""
    n = np.asarray(n_group_accounts)
    return (n >= min_group_accounts) & (n / np.maximum(np.asarray(n_all_accounts), 1) >= min_concentration)


def concentrated_values(
    pairs: pd.DataFrame, group_accounts: set[str], value_accounts: dict[tuple[str, str], int],
    min_group_accounts: int = DEFAULTS.infra_min_accounts,
    min_concentration: float = DEFAULTS.infra_min_concentration,
) -> list[SharedValue]:
    """Identifier values used by at least ``min_group_accounts`` group accounts and mostly by them.

    ``pairs`` holds distinct ``(field, value, account_id)`` rows of the group's accounts; ``value_accounts``
    maps ``(field, value)`` to the number of accounts in the whole workspace that use it.
    """
    sub = pairs[pairs["account_id"].isin(group_accounts)]
    counts = sub.groupby(["field", "value"])["account_id"].nunique()
    totals = np.array([value_accounts.get(key, n) for key, n in counts.items()], dtype=np.int64)
    keep = concentrated(counts.to_numpy(), totals, min_group_accounts, min_concentration)
    out = [SharedValue(field, value, int(n), int(total))
           for ((field, value), n), total, k in zip(counts.items(), totals, keep, strict=True) if k]
    out.sort(key=lambda s: (-s.n_group_accounts, s.field, s.value))
    return out


def window_counts(ts: np.ndarray, model: np.ndarray, releases: dict[str, int],
                  window_hours: int = DEFAULTS.pivot_window_hours) -> dict[str, tuple[int, int]]:
    """Per released model: ``(requests inside its window, those of them on the model)`` of the requests sent at
    ``ts`` (epoch seconds) to ``model``; the window is ``window_hours`` from the release. Counts add up: the
    counts of everyone but a group are everyone's minus the group's (:func:`pivot_against`)."""
    out: dict[str, tuple[int, int]] = {}
    for name, t0 in releases.items():
        inside = (ts >= t0) & (ts < t0 + window_hours * 3600)
        out[name] = (int(inside.sum()), int((model[inside] == name).sum()))
    return out


def pivot(group_models: pd.DataFrame, other_models: pd.DataFrame, releases: dict[str, int],
          window_hours: int = DEFAULTS.pivot_window_hours, min_requests: int = DEFAULTS.pivot_min_requests,
          full_excess: float = DEFAULTS.pivot_full_excess) -> tuple[float | None, str | None]:
    """Excess share of the group's traffic on a new model within ``window_hours`` of its release, over
    ``full_excess`` (capped at 1).

    Both frames have ``ts`` (epoch seconds) and ``model``. ``releases`` maps new models to their first
    appearance in the workspace. Returns ``(value, model)``; ``(None, None)`` when no new model is in reach.
    """
    def counts(models: pd.DataFrame) -> dict[str, tuple[int, int]]:
        return window_counts(models["ts"].to_numpy(), models["model"].to_numpy(dtype=object), releases, window_hours)

    return pivot_against(counts(group_models), counts(other_models), min_requests, full_excess)


def pivot_against(group: dict[str, tuple[int, int]], other: dict[str, tuple[int, int]],
                  min_requests: int = DEFAULTS.pivot_min_requests, full_excess: float = DEFAULTS.pivot_full_excess
                  ) -> tuple[float | None, str | None]:
    """:func:`pivot` from :func:`window_counts` of the group and of everyone else (same releases)."""
    best: tuple[float | None, str | None] = (None, None)
    for model, (n_group, on_group) in group.items():
        if n_group < min_requests:
            continue
        n_other, on_other = other[model]
        p_group = on_group / n_group
        p_other = on_other / n_other if n_other else 0.0
        value = float(np.clip((p_group - p_other) / full_excess, 0.0, 1.0))
        if best[0] is None or value > best[0]:
            best = (value, model)
    return best


def new_model_releases(models: pd.DataFrame, grace_hours: int = DEFAULTS.release_grace_hours,
                       min_requests: int = DEFAULTS.release_min_requests) -> dict[str, int]:
    """Models first seen at least ``grace_hours`` after the log starts, in at least ``min_requests`` requests
    (``ts`` epoch seconds, ``model``)."""
    m = models.dropna(subset=["model"])
    if m.empty:
        return {}
    start = int(m["ts"].min())
    first = m.groupby("model")["ts"].agg(["min", "size"])
    first = first[(first["min"] >= start + grace_hours * 3600) & (first["size"] >= min_requests)]
    return {str(k): int(v) for k, v in first["min"].items()}
