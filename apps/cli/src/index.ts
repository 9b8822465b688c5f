export { maskForMlm, pad } from './demo/mlm.js';
export { type DemoModelResult, type DemoResult, type DemoRunOptions, runDemo } from './demo/run.js';
export {
  buildDemoBenchmark,
  DEMO_LABELS,
  type DemoBenchmark,
  type DemoExample,
  type DemoLanguage,
  type DemoOptions,
} from './demo/synthetic.js';
export { WordTokenizer } from './demo/wordTokenizer.js';
