export { COMMANDS } from './cli/commands.js';
export { applyOverrides, readConfigFile, validateConfig } from './cli/config.js';
export { type Command, type CommandContext, EXIT, parseArgv, runCli } from './cli/main.js';
export { maskForMlm, pad } from './demo/mlm.js';
export { demoReport } from './demo/report.js';
export { type DemoModelResult, type DemoResult, type DemoRunOptions, runDemo } from './demo/run.js';
export {
  buildDemoBenchmark,
  DEMO_LABELS,
  type DemoBenchmark,
  type DemoExample,
  type DemoLanguage,
  type DemoOptions,
} from './demo/synthetic.js';
