"""The Chinese text of ``losscli explain --lang zh``: plain strings, no torch or NumPy.

For every loss command, ``LOSSES`` holds its summary, what each input must be (by input
name), each option's help (by option name, without the valid range, which ``explain`` adds),
the steps and the common mistakes, in the same number and order as the English ones of its
spec. Formulas, code, option flags, torch class names and file names are written as in the
English text; ``explain`` prints the formula and the example command from the spec itself.
"""

from __future__ import annotations

HEADINGS = {
    "formula": "公式",
    "inputs": "输入（按顺序）",
    "options": "选项（括号内为 torch 的默认值）",
    "steps": "计算步骤",
    "mistakes": "常见错误",
    "try": "动手试试",
}

# How an option line names its default and its valid values, and how choices are joined.
DEFAULT = "默认"
VALID = "取值范围："
OR = " 或 "

# Formulas whose English text has words beside the mathematics: the same mathematics, with
# the words in Chinese. A loss not named here shows its spec's formula as it is.
FORMULAS = {
    "ce": (
        "loss_i = -w[y_i] * log softmax(x_i)[y_i]\n"
        "       = -w[y_i] * (x_i[y_i] - log sum_c exp x_i[c])\n"
        "mean = sum_i loss_i / sum_i w[y_i]   （被忽略的目标两个求和都不计入）\n"
        "目标为类别概率时：loss_i = -sum_c w[c] * y_i[c] * log softmax(x_i)[c]；mean 除以 N"
    ),
    "nll": "loss_i = -w[y_i] * x_i[y_i]   （x 为对数概率）\nmean = sum_i loss_i / sum_i w[y_i]",
    "mse": "对每个元素 j：loss_j = (x_j - y_j)^2；mean = sum_j loss_j / numel",
    "l1": "对每个元素 j：loss_j = |x_j - y_j|；mean = sum_j loss_j / numel",
    "huber": (
        "d_j = |x_j - y_j|\n"
        "d_j < delta 时 loss_j = 0.5 d_j^2，否则 loss_j = delta (d_j - 0.5 delta)\n"
        "mean = sum_j loss_j / numel"
    ),
    "smooth-l1": (
        "d_j = |x_j - y_j|\n"
        "d_j < beta 时 loss_j = 0.5 d_j^2 / beta，否则 loss_j = d_j - 0.5 beta\n"
        "mean = sum_j loss_j / numel"
    ),
    "poisson-nll": (
        "log_input 时：loss_j = exp(x_j) - y_j x_j\n"
        "否则：loss_j = x_j - y_j log(x_j + eps)\n"
        "--full 在 y > 1 处再加上 y log y - y + 0.5 log(2 pi y)；mean = sum / numel"
    ),
    "gaussian-nll": (
        "loss_j = 0.5 (log max(var_j, eps) + (x_j - y_j)^2 / max(var_j, eps))"
        "（使用 --full 时再加 0.5 log(2 pi)）\n"
        "mean = sum_j loss_j / numel"
    ),
    "bce": (
        "loss_j = -w_j * (y_j log p_j + (1 - y_j) log(1 - p_j))，两个 log 都截断在 -100\n"
        "mean = sum_j loss_j / numel"
    ),
    "bce-logits": (
        "loss_j = -w_j (pw_c y_j log sigmoid(x_j) + (1 - y_j) log(1 - sigmoid(x_j)))\n"
        "mean = sum_j loss_j / numel   （pw_c：该元素所在列的 --pos-weight）"
    ),
    "focal": (
        "p_j = sigmoid(x_j)；p_t = p_j y_j + (1 - p_j)(1 - y_j)\n"
        "loss_j = -alpha_t (1 - p_t)^gamma log(p_t)   （alpha_t = alpha y + (1-alpha)(1-y)）\n"
        "mean = sum_j loss_j / numel"
    ),
    "kl-div": (
        "loss_j = t_j (log t_j - x_j)   （x = log q，即预测的对数概率）\n"
        "batchmean = sum_j loss_j / N（每个样本的 KL 散度）；mean = sum / numel"
    ),
    "hinge-embedding": (
        "y_j = 1 时 loss_j = x_j，否则 loss_j = max(0, margin - x_j)；mean = sum / numel"
    ),
    "multilabel-margin": (
        "loss_i = sum_{j in T_i} sum_{k not in T_i} max(0, 1 - (x_i[j] - x_i[k])) / C\n"
        "T_i = 第 i 行第一个 -1 之前的下标；mean = sum_i loss_i / N"
    ),
    "cosine-embedding": (
        "cos_i = x1_i . x2_i / (|x1_i| |x2_i|)\n"
        "y_i = 1 时 loss_i = 1 - cos_i，否则 loss_i = max(0, cos_i - margin)；mean = sum / N"
    ),
    "triplet-margin": (
        "d(u, v) = ||u - v + eps||_p\n"
        "loss_i = max(0, d(a_i, p_i) - d(a_i, n_i) + margin)；mean = sum / N\n"
        "--swap：d(a_i, n_i) <- min(d(a_i, n_i), d(p_i, n_i))"
    ),
    "ctc": (
        "loss_i = -log（对 x_i 中所有能折叠成 y_i 的对齐 a，求 prod_t p_t(a_t) 之和）\n"
        "mean = 1/N sum_i loss_i / max(len(y_i), 1)"
    ),
}

# Options that several losses take, written once.
WEIGHT = "缩放权重：用逗号分隔的列表，或一个文件。"
IGNORE_INDEX = "目标等于这个值时被忽略（不计损失，也没有梯度）。"
MARGIN = "损失的间隔（margin）。"

# Inputs that several losses describe alike.
ANY_SHAPE = "任意形状 (N,*)"
SAME_SHAPE = "与 predictions 形状相同"
EMBEDDINGS = "嵌入向量，形状 (N,D)"
MEAN_OVER_ELEMENTS = "归约：mean 除以元素个数"

LOSSES: dict[str, dict] = {
    "ce": {
        "summary": "对 logits 计算交叉熵，目标可以是类别索引，也可以是类别概率",
        "inputs": {
            "predictions": "logits，形状 (N,C) 或 (N,C,d1,...)："
            "模型输出的原始分数，不要先做 softmax",
            "targets": "类别索引，形状 (N) 或 (N,d1,...)，取值在 [0,C) 内；"
            "或者与 predictions 形状相同的类别概率",
        },
        "options": {
            "weight": WEIGHT,
            "ignore_index": IGNORE_INDEX,
            "label_smoothing": "混入目标的标签平滑量。",
        },
        "steps": (
            "softmax 把每一行 logits 变成概率：p = exp(x) / sum exp(x)",
            "取出目标类别的概率 p[y]",
            "这个样本的损失是 -log p[y]（使用 --weight 时再乘以 w[y]）",
            "使用 --label-smoothing e 时，取上一步结果的 (1-e) 份，"
            "再加上 e/C 乘以所有类别的 -log p 之和",
            "归约：mean 除以未被忽略的目标个数（使用权重时除以它们的权重总和）",
            "对 logits 的梯度：不加权的 mean 下为 (softmax(x) - one_hot(y)) / N",
        ),
        "mistakes": (
            "传入概率（softmax 的输出）：CrossEntropyLoss 自己会先做 log-softmax，"
            "所以应当直接传入原始 logits",
            "把 one-hot 行当作类别索引传入：one-hot 行会被当成类别概率来读",
            "标签从 1 开始编号：类别索引必须在 0..C-1 之间",
            "ce = nll(log_softmax(x))：如果模型已经输出对数概率，请改用 nll",
        ),
    },
    "nll": {
        "summary": "取目标类别处的对数概率，计算负对数似然",
        "inputs": {
            "predictions": "对数概率，形状 (N,C) 或 (N,C,d1,...)：即 log_softmax 的输出",
            "targets": "类别索引，形状 (N) 或 (N,d1,...)，取值在 [0,C) 内",
        },
        "options": {"weight": WEIGHT, "ignore_index": IGNORE_INDEX},
        "steps": (
            "取出目标类别的对数概率 x[y]",
            "取相反数（使用 --weight 时再乘以 w[y]）",
            "归约：mean 除以未被忽略的目标个数（使用权重时除以它们的权重总和）",
        ),
        "mistakes": (
            "传入 logits 或概率：NLLLoss 期望的是 log_softmax 的输出（对数概率）",
            "nll(log_softmax(x)) 等于 ce(x)：手里是原始 logits 时，直接用 ce",
        ),
    },
    "mse": {
        "summary": "预测值与目标值之间的均方误差",
        "inputs": {"predictions": ANY_SHAPE, "targets": SAME_SHAPE},
        "options": {},
        "steps": (
            "逐个元素地用预测值减去目标值",
            "把差值平方",
            "归约：mean 除以元素个数（不是行数）",
            "对 predictions 的梯度：2 (x - y) / numel",
        ),
        "mistakes": (
            "targets 的形状是 (N,)，而 predictions 是 (N,1)：torch 会把它们广播成 (N,N)；"
            "losscli 把两者当作同一形状处理，并给出警告",
            "把它和 RMSE 混为一谈：MSELoss 不开平方根",
        ),
    },
    "l1": {
        "summary": "预测值与目标值之间的平均绝对误差",
        "inputs": {"predictions": ANY_SHAPE, "targets": SAME_SHAPE},
        "options": {},
        "steps": (
            "逐个元素地用预测值减去目标值",
            "取绝对值",
            MEAN_OVER_ELEMENTS,
            "对 predictions 的梯度：sign(x - y) / numel（x = y 处为 0）",
        ),
        "mistakes": (
            "以为越接近目标梯度越小：它的大小始终不变；想要这种效果请看 huber 或 smooth-l1",
        ),
    },
    "huber": {
        "summary": "离目标近时用平方误差，差值超过 delta 后改用（按 delta 缩放的）绝对误差",
        "inputs": {"predictions": ANY_SHAPE, "targets": SAME_SHAPE},
        "options": {"delta": "损失从二次变为线性的分界点。"},
        "steps": (
            "求预测值与目标值之差的绝对值 d",
            "d 小于 delta 时，损失为 0.5 d^2（相当于 MSE / 2）；"
            "大于 delta 时为 delta (d - delta/2)",
            MEAN_OVER_ELEMENTS,
            "梯度：在 delta 以内为 (x - y)，在 delta 以外为 delta * sign(x - y)，再除以 numel",
        ),
        "mistakes": (
            "和 smooth-l1 混淆：当 delta = beta 时，huber = beta * smooth_l1",
            "--delta 必须 > 0",
        ),
    },
    "smooth-l1": {
        "summary": "离目标近时用平方误差除以 beta，差值超过 beta 后用绝对误差",
        "inputs": {"predictions": ANY_SHAPE, "targets": SAME_SHAPE},
        "options": {"beta": "损失从二次变为线性的分界点。"},
        "steps": (
            "求差值的绝对值 d",
            "d 小于 beta 时，损失为 0.5 d^2 / beta；大于 beta 时为 d - beta/2",
            MEAN_OVER_ELEMENTS,
        ),
        "mistakes": (
            "beta 为 0 时，它就变成了 L1Loss",
            "超过 beta 之后，无论 beta 取多少，梯度的大小都是 1（huber 的是 delta）",
        ),
    },
    "poisson-nll": {
        "summary": "计数在泊松分布（速率由模型预测）下的负对数似然",
        "inputs": {
            "predictions": "对数速率（使用 --no-log-input 时为速率本身），任意形状",
            "targets": "非负计数（>= 0），与 predictions 形状相同",
        },
        "options": {
            "log_input": "predictions 是对数速率（开启）还是速率（关闭）。",
            "full": "加上 Stirling 近似项。",
            "eps": "使用 --no-log-input 时，取对数之前加到速率上的小量。",
        },
        "steps": (
            "把预测值变成速率：对数速率取 exp(x)，否则就是 x 本身",
            "损失 = rate - y log(rate)；除非使用 --full，否则省去常数项 log(y!)",
            MEAN_OVER_ELEMENTS,
        ),
        "mistakes": (
            "在 --log-input 开启（默认如此）时传入速率：exp 会让它们变得非常大",
            "计数为负：泊松分布的目标是 >= 0 的计数",
        ),
    },
    "gaussian-nll": {
        "summary": "目标值在高斯分布（均值和方差都由模型预测）下的负对数似然",
        "inputs": {
            "predictions": "预测的均值，任意形状 (N,*)",
            "targets": SAME_SHAPE,
            "var": "预测的方差（必须 > 0），与 predictions 形状相同；"
            "或者最后一维为 1 或省去（每行一个方差）",
        },
        "options": {
            "full": "加上常数 0.5 log(2 pi)。",
            "eps": "方差小于 eps 时按 eps 计算（下限截断）。",
        },
        "steps": (
            "把方差的下限截断为 eps",
            "方差对数的一半，加上平方误差除以方差后的一半",
            MEAN_OVER_ELEMENTS,
            "梯度会传到 predictions、targets 和方差上",
        ),
        "mistakes": (
            "传入标准差而不是方差",
            "方差为负或为零：losscli 会拒绝（torch 会截断或报错）",
        ),
    },
    "bce": {
        "summary": "对 [0,1] 内的概率和目标计算二元交叉熵",
        "inputs": {
            "predictions": "[0,1] 内的概率（sigmoid 的输出），任意形状",
            "targets": "[0,1] 内的值，与 predictions 形状相同",
        },
        "options": {"weight": WEIGHT},
        "steps": (
            "对每个元素：目标为 1 处取 log p，目标为 0 处取 log(1-p)",
            "按目标值把两者混合：y log p + (1-y) log(1-p)，再取相反数",
            "如果给了 --weight，就乘上它（每列一个；一维输入则每行一个）",
            MEAN_OVER_ELEMENTS,
        ),
        "mistakes": (
            "传入 logits：BCELoss 需要经过 sigmoid 的概率；手里是 logits 时请用 bce-logits"
            "（数值上也更稳定）",
            "预测值恰好为 0 或 1：log 会被截断在 -100",
        ),
    },
    "bce-logits": {
        "summary": "对 logits 计算二元交叉熵（内置 sigmoid，数值稳定）",
        "inputs": {
            "predictions": "logits（原始分数），任意形状",
            "targets": "[0,1] 内的值，与 predictions 形状相同",
        },
        "options": {
            "weight": WEIGHT,
            "pos_weight": "正样本的权重，每个类别（列）一个。",
        },
        "steps": (
            "用 sigmoid 把每个 logit 压到 0 和 1 之间：p = 1 / (1 + exp(-x))",
            "计算 p 对 y 的二元交叉熵，正样本按 --pos-weight 加权",
            "直接从 logit 计算（log-sum-exp），所以永远不会去算 log(0)",
            MEAN_OVER_ELEMENTS,
            "对 logits 的梯度（不加权时）：(sigmoid(x) - y) / numel",
        ),
        "mistakes": (
            "传入概率：BCEWithLogitsLoss 自己会做 sigmoid",
            "--pos-weight 是每列（每个类别）一个值，而不是每行一个",
        ),
    },
    "focal": {
        "summary": "对 logits 的二元交叉熵，在预测已经正确的地方把损失调小",
        "inputs": {
            "predictions": "logits（原始分数），任意形状",
            "targets": "[0,1] 内的值，与 predictions 形状相同",
        },
        "options": {
            "alpha": "正样本的权重（负样本为 1 - alpha）；取负值时不加权。",
            "gamma": "聚焦指数：取 0 时就是普通的 bce-logits。",
        },
        "steps": (
            "用 sigmoid 把每个 logit 压到 0 和 1 之间：p = 1 / (1 + exp(-x))",
            "p_t 是给正确答案的概率：y = 1 时为 p，y = 0 时为 1 - p",
            "logit 的二元交叉熵 -log(p_t)，直接从 x 稳定地计算",
            "乘以 (1 - p_t)^gamma：容易且有把握的样本几乎不计入",
            "正样本乘以 alpha，负样本乘以 1 - alpha（alpha 为负时不乘）",
            MEAN_OVER_ELEMENTS,
        ),
        "mistakes": (
            "传入概率：focal 损失自己会做 sigmoid",
            "gamma 取 0、alpha 取负值时结果与 bce-logits 完全相同，值得用来核对",
        ),
    },
    "soft-margin": {
        "summary": "针对 +1/-1 目标的 logistic 损失 log(1 + exp(-y x))",
        "inputs": {
            "predictions": "分数，任意形状",
            "targets": "+1 或 -1，与 predictions 形状相同",
        },
        "options": {},
        "steps": (
            "把每个分数乘以它的 +1/-1 标签，得到间隔（margin）y x",
            "损失 = log(1 + exp(-y x))：间隔是很大的正数时，损失接近 0",
            MEAN_OVER_ELEMENTS,
        ),
        "mistakes": ("使用 0/1 标签：SoftMarginLoss 需要 +1/-1（0/1 标签请用 bce-logits）",),
    },
    "multilabel-soft-margin": {
        "summary": "逐类别的 logistic 损失，再对类别取平均，用于 0/1 多标签目标",
        "inputs": {
            "predictions": "logits，形状 (N,C)",
            "targets": "形状 (N,C) 的 0/1 值（也接受 [0,1] 内的值）",
        },
        "options": {"weight": WEIGHT},
        "steps": (
            "对一个样本的每个类别，计算基于 logits 的二元交叉熵",
            "乘以每个类别的 --weight，再对 C 个类别取平均",
            "归约：mean 除以样本数 N",
        ),
        "mistakes": (
            "只有不加权时，它才等于 reduction 为 mean 的 bce-logits",
            "目标写成类别索引：多标签目标是形状 (N,C) 的 0/1 行",
        ),
    },
    "kl-div": {
        "summary": "目标分布相对于预测分布的 Kullback-Leibler 散度（KL 散度）",
        "inputs": {
            "predictions": "对数概率（log_softmax 的输出），任意形状",
            "targets": "概率（使用 --log-target 时为对数概率），与 predictions 形状相同",
        },
        "options": {"log_target": "targets 是对数概率。"},
        "steps": (
            "取每个目标概率 t 和对应的预测对数概率 x",
            "t (log t - x) 是这个元素对 KL(t || q) 的贡献；t = 0 的元素贡献为 0",
            "归约：batchmean 除以批大小 N，得到每个样本的 KL 散度",
        ),
        "mistakes": (
            "把概率当作输入传入：KLDivLoss 期望输入是对数概率",
            "reduction 为 mean 时除以的是全部元素个数：要得到真正的 KL 散度，请用 batchmean",
            "把两个参数弄反：输入是模型的 log q，目标是 p",
        ),
    },
    "hinge-embedding": {
        "summary": "相似的一对（y=1）损失为 x，不相似的一对（y=-1）损失为 max(0, margin - x)",
        "inputs": {
            "predictions": "距离（例如一对样本之间的 L1 距离），任意形状",
            "targets": "+1 或 -1，与 predictions 形状相同",
        },
        "options": {"margin": MARGIN},
        "steps": (
            "相似的一对（y = 1）：损失就是距离本身",
            "不相似的一对（y = -1）：损失是距离比 margin 小了多少（不小于 margin 时为 0）",
            MEAN_OVER_ELEMENTS,
        ),
        "mistakes": (
            "传入相似度而不是距离",
            "使用 0/1 标签：目标必须是 +1/-1",
        ),
    },
    "multi-margin": {
        "summary": "多分类 hinge 损失：其他每个类别的分数都要比目标类别低至少 margin",
        "inputs": {
            "predictions": "分数，形状 (N,C)",
            "targets": "类别索引，形状 (N)，取值在 [0,C) 内",
        },
        "options": {"p": "hinge 的指数。", "margin": MARGIN, "weight": WEIGHT},
        "steps": (
            "对每个错误类别 j，把它的分数与目标类别的分数比较：margin - x[y] + x[j]",
            "只保留正的部分，取 p 次方（p 为 1 或 2），再乘以 w[y]",
            "对所有错误类别求和，再除以 C（全部类别数，包括目标类别）",
            "归约：mean 除以 N",
        ),
        "mistakes": (
            "--p 取 1 或 2 以外的值：torch 只支持这两个",
            "以为会除以 C - 1：torch 除以的是 C",
            "torch 的文档把 w[y] 写在幂的里面；torch 实际上是在取幂之后再乘，如这里所示",
        ),
    },
    "multilabel-margin": {
        "summary": "多标签 hinge 损失：每个目标类别的分数都要比每个其他类别高出至少 1",
        "inputs": {
            "predictions": "分数，形状 (N,C)",
            "targets": "形状 (N,C)：每行先写这一行各个目标类别的索引，"
            "再接一个 -1（其后的内容被忽略）",
        },
        "options": {},
        "steps": (
            "读出每一行在第一个 -1 之前的目标类别",
            "对每一对（目标类别 j，非目标类别 k），取 max(0, 1 - (x[j] - x[k]))",
            "把所有这些对加起来，再除以 C",
            "归约：mean 除以 N",
        ),
        "mistakes": (
            "使用 0/1 行（multi-hot）：这个损失要的是用 -1 补齐的类别索引；"
            "0/1 行请用 multilabel-soft-margin",
            "忘了写 -1：没有它，这一行的每个条目都会被当作目标",
        ),
    },
    "cosine-embedding": {
        "summary": "相似的一对损失为 1 - cos，不相似的一对损失为 max(0, cos - margin)",
        "inputs": {
            "x1": EMBEDDINGS,
            "x2": EMBEDDINGS,
            "targets": "每行一个 +1 或 -1，形状 (N)",
        },
        "options": {"margin": MARGIN},
        "steps": (
            "计算每一对行向量的余弦相似度 cos",
            "相似的一对（y = 1）损失为 1 - cos；不相似的一对损失为 cos 超出 margin 的部分",
            "归约：mean 除以 N",
        ),
        "mistakes": (
            "--margin 超出 [-1, 1]（通常取 0 到 0.5）",
            "使用 0/1 标签，而不是 +1/-1",
        ),
    },
    "margin-ranking": {
        "summary": "分数差上的 hinge 损失：y = 1 时 x1 应排在 x2 之上，y = -1 时应排在其下",
        "inputs": {
            "x1": "分数，任意形状",
            "x2": "分数，与 x1 形状相同",
            "targets": "+1 或 -1，与 x1 形状相同",
        },
        "options": {"margin": MARGIN},
        "steps": (
            "求两个分数之差，并按期望的顺序 y 决定它的正负号",
            "损失是这个差值比 margin 小了多少（达到 margin 时为 0）",
            MEAN_OVER_ELEMENTS,
        ),
        "mistakes": (
            "y = 1 表示 x1 应该更大",
            "使用 0/1 标签，而不是 +1/-1",
        ),
    },
    "triplet-margin": {
        "summary": "锚点（anchor）到正样本的距离，要比到负样本的距离至少近一个 margin",
        "inputs": {"anchor": EMBEDDINGS, "positive": EMBEDDINGS, "negative": EMBEDDINGS},
        "options": {
            "margin": MARGIN,
            "p": "计算成对距离所用范数的阶数。",
            "eps": "求范数之前加到差值上的小量。",
            "swap": "正样本与负样本之间的距离更小时，改用这个距离。",
        },
        "steps": (
            "计算锚点到正样本的距离，以及锚点到负样本的距离",
            "使用 --swap 时，如果正样本到负样本的距离更小，就改用它",
            "损失 = max(0, d(a,p) - d(a,n) + margin)",
            "归约：mean 除以 N",
        ),
        "mistakes": (
            "--margin 必须 > 0",
            "输入顺序弄混：三个输入依次是 anchor、positive、negative",
        ),
    },
    "ctc": {
        "summary": "标签序列的负对数似然（对所有可能的对齐路径求和）",
        "inputs": {
            "log_probs": "对数概率，形状 (T,N,C)，来自 NPY/NPZ 文件；或形状 (T,C)",
            "targets": "除空白符（blank）以外的类别索引：形状 (N,S) 的补齐行，或一维的拼接序列",
            "input_lengths": "形状 (N)：每个样本用到的帧数，取值 1..T",
            "target_lengths": "形状 (N)：每个样本的标签个数",
        },
        "options": {
            "blank": "空白标签（blank）的索引。",
            "zero_infinity": "把无穷大的损失（不可能实现的目标）置为 0。",
        },
        "steps": (
            "在目标的各个标签之间，以及首尾两端，插入空白符（blank）",
            "在前 input_length 帧上做前向递推：每一步可以停在原处、前进一格，"
            "或者跳过夹在两个不同标签之间的空白符",
            "到达终点的总概率取 -log，就是这个样本的损失",
            "归约：mean 先把每个损失除以它的目标长度，再对 N 取平均",
        ),
        "mistakes": (
            "传入 softmax 概率或原始 logits：CTCLoss 需要在 C 这一维上做过 log_softmax 的结果",
            "形状写成 (N,T,C) 而不是 (T,N,C)：时间维在最前面",
            "目标比输入所能容纳的更长：损失为无穷大（见 --zero-infinity）",
            "把空白符的索引当作标签使用",
        ),
    },
}
