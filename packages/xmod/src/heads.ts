import * as tf from '@tensorflow/tfjs-core';
import { XltConfigError, type XmodConfig } from '@xlt/core';
import { type LabelsInput, toFlat, type XmodInputs } from './inputs.js';
import { crossEntropy } from './losses.js';
import { XmodPreTrainedModel } from './model.js';
import { dropout, gelu, LayerNorm, Linear, type LinearLike } from './nn/layers.js';
import { Module } from './nn/module.js';

/** The task heads (`lm_head`, `classifier`, `qa_outputs`) over the `roberta` encoder, as transformers names them. */

/** Output of the masked-LM, sequence and token classification models. */
export interface ClassifierOutput {
  logits: tf.Tensor;
  loss?: tf.Scalar;
  hiddenStates?: tf.Tensor[];
}

class XmodLMHead extends Module {
  dense: LinearLike;
  layer_norm: LayerNorm;
  bias: tf.Variable;
  constructor(cfg: XmodConfig) {
    super();
    this.dense = this.registerModule(
      'dense',
      new Linear(cfg.hidden_size, cfg.hidden_size, { std: cfg.initializer_range }),
    );
    this.layer_norm = this.registerModule('layer_norm', new LayerNorm(cfg.hidden_size, cfg.layer_norm_eps));
    this.bias = this.registerParameter('bias', tf.zeros([cfg.vocab_size]));
  }
}

/** `XmodForMaskedLM` / `XLMRobertaForMaskedLM`: decoder tied to the word embeddings. */
export class XmodForMaskedLM extends XmodPreTrainedModel {
  lm_head: XmodLMHead;
  protected readonly headPrefixes = ['lm_head.'];
  readonly architecture: string;
  constructor(config: XmodConfig | Record<string, unknown>) {
    super(config);
    this.architecture = this.config.model_type === 'xmod' ? 'XmodForMaskedLM' : 'XLMRobertaForMaskedLM';
    this.lm_head = this.registerModule('lm_head', new XmodLMHead(this.config));
  }
  forward(inputs: XmodInputs & { labels?: LabelsInput }): ClassifierOutput {
    const enc = this.roberta.forward(inputs);
    const logits = tf.tidy(() => {
      const h = this.lm_head.layer_norm.apply(gelu(this.lm_head.dense.apply(enc.lastHiddenState)));
      const [b, t, d] = h.shape as [number, number, number];
      const flat = tf.matMul(
        tf.reshape(h, [b * t, d]),
        this.roberta.embeddings.word_embeddings.weight,
        false,
        true,
      );
      return tf.reshape(tf.add(flat, this.lm_head.bias), [b, t, this.config.vocab_size]);
    });
    enc.lastHiddenState.dispose();
    const out: ClassifierOutput = { logits };
    if (enc.hiddenStates !== undefined) out.hiddenStates = enc.hiddenStates;
    if (inputs.labels !== undefined) out.loss = crossEntropy(logits, toFlat(inputs.labels).data) as tf.Scalar;
    return out;
  }
}

class XmodClassificationHead extends Module {
  dense: LinearLike;
  out_proj: LinearLike;
  constructor(cfg: XmodConfig, numLabels: number) {
    super();
    this.dense = this.registerModule(
      'dense',
      new Linear(cfg.hidden_size, cfg.hidden_size, { std: cfg.initializer_range }),
    );
    this.out_proj = this.registerModule(
      'out_proj',
      new Linear(cfg.hidden_size, numLabels, { std: cfg.initializer_range }),
    );
  }
}

/** `XmodForSequenceClassification`: RoBERTa head on `<s>`; num_labels 1 = MSE regression. */
export class XmodForSequenceClassification extends XmodPreTrainedModel {
  classifier: XmodClassificationHead;
  protected readonly headPrefixes = ['classifier.'];
  readonly architecture: string;
  constructor(config: XmodConfig | Record<string, unknown>) {
    super(config);
    this.architecture =
      this.config.model_type === 'xmod'
        ? 'XmodForSequenceClassification'
        : 'XLMRobertaForSequenceClassification';
    this.classifier = this.registerModule(
      'classifier',
      new XmodClassificationHead(this.config, this.numLabels()),
    );
  }
  forward(inputs: XmodInputs & { labels?: LabelsInput }): ClassifierOutput {
    const enc = this.roberta.forward(inputs);
    const p = this.classifierDropout();
    const logits = tf.tidy(() => {
      const h = enc.lastHiddenState;
      const [b, , d] = h.shape as [number, number, number];
      let x = tf.reshape(tf.slice(h, [0, 0, 0], [b, 1, d]), [b, d]);
      x = dropout(x, p, this.training);
      x = tf.tanh(this.classifier.dense.apply(x));
      x = dropout(x, p, this.training);
      return this.classifier.out_proj.apply(x);
    });
    enc.lastHiddenState.dispose();
    const out: ClassifierOutput = { logits };
    if (enc.hiddenStates !== undefined) out.hiddenStates = enc.hiddenStates;
    if (inputs.labels !== undefined) {
      const labels = toFlat(inputs.labels).data;
      const n = this.numLabels();
      if (this.config.problem_type === 'multi_label_classification')
        throw new XltConfigError('multi_label_classification (BCE) is not supported', {
          field: 'problem_type',
        });
      const regression =
        this.config.problem_type === 'regression' || (this.config.problem_type == null && n === 1);
      out.loss = (
        regression
          ? tf.tidy(() =>
              tf.mean(tf.square(tf.sub(tf.reshape(logits, [-1]), tf.tensor1d(labels, 'float32')))),
            )
          : crossEntropy(logits, labels)
      ) as tf.Scalar;
    }
    return out;
  }
}

/** `XmodForTokenClassification`: dropout then `classifier` on every token. */
export class XmodForTokenClassification extends XmodPreTrainedModel {
  classifier: LinearLike;
  protected readonly headPrefixes = ['classifier.'];
  readonly architecture: string;
  constructor(config: XmodConfig | Record<string, unknown>) {
    super(config);
    this.architecture =
      this.config.model_type === 'xmod' ? 'XmodForTokenClassification' : 'XLMRobertaForTokenClassification';
    this.classifier = this.registerModule(
      'classifier',
      new Linear(this.config.hidden_size, this.numLabels(), { std: this.config.initializer_range }),
    );
  }
  forward(inputs: XmodInputs & { labels?: LabelsInput }): ClassifierOutput {
    const enc = this.roberta.forward(inputs);
    const logits = tf.tidy(() =>
      this.classifier.apply(dropout(enc.lastHiddenState, this.classifierDropout(), this.training)),
    );
    enc.lastHiddenState.dispose();
    const out: ClassifierOutput = { logits };
    if (enc.hiddenStates !== undefined) out.hiddenStates = enc.hiddenStates;
    if (inputs.labels !== undefined) out.loss = crossEntropy(logits, toFlat(inputs.labels).data) as tf.Scalar;
    return out;
  }
}

/** Output of {@link XmodForQuestionAnswering}. */
export interface QuestionAnsweringOutput {
  startLogits: tf.Tensor;
  endLogits: tf.Tensor;
  loss?: tf.Scalar;
  hiddenStates?: tf.Tensor[];
}

/** `XmodForQuestionAnswering`: `qa_outputs` gives start/end logits; loss (start CE + end CE) / 2. */
export class XmodForQuestionAnswering extends XmodPreTrainedModel {
  qa_outputs: LinearLike;
  protected readonly headPrefixes = ['qa_outputs.'];
  readonly architecture: string;
  constructor(config: XmodConfig | Record<string, unknown>) {
    super(config);
    this.architecture =
      this.config.model_type === 'xmod' ? 'XmodForQuestionAnswering' : 'XLMRobertaForQuestionAnswering';
    this.qa_outputs = this.registerModule(
      'qa_outputs',
      new Linear(this.config.hidden_size, 2, { std: this.config.initializer_range }),
    );
  }
  forward(
    inputs: XmodInputs & { startPositions?: LabelsInput; endPositions?: LabelsInput },
  ): QuestionAnsweringOutput {
    const enc = this.roberta.forward(inputs);
    const [startLogits, endLogits] = tf.tidy(() => {
      const l = this.qa_outputs.apply(enc.lastHiddenState);
      const [b, t] = l.shape as [number, number, number];
      const s = tf.reshape(tf.slice(l, [0, 0, 0], [b, t, 1]), [b, t]);
      const e = tf.reshape(tf.slice(l, [0, 0, 1], [b, t, 1]), [b, t]);
      return [s, e];
    }) as [tf.Tensor, tf.Tensor];
    enc.lastHiddenState.dispose();
    const out: QuestionAnsweringOutput = { startLogits, endLogits };
    if (enc.hiddenStates !== undefined) out.hiddenStates = enc.hiddenStates;
    if (inputs.startPositions !== undefined && inputs.endPositions !== undefined) {
      const t = startLogits.shape[1] ?? 0;
      // transformers clamps positions to [0, seq_len] and ignores seq_len (positions outside the input).
      const clamp = (v: number[]) => v.map((x) => Math.min(Math.max(x, 0), t));
      const sp = clamp(toFlat(inputs.startPositions).data);
      const ep = clamp(toFlat(inputs.endPositions).data);
      out.loss = tf.tidy(() =>
        tf.div(tf.add(crossEntropy(startLogits, sp, t), crossEntropy(endLogits, ep, t)), 2),
      ) as tf.Scalar;
    }
    return out;
  }
}
