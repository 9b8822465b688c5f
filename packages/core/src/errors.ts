/** Machine-readable category of an {@link XltError}. */
export type XltErrorCode =
  | 'FORMAT' // a file's content is not what its format requires
  | 'NOT_FOUND' // a file, tensor, language or key that was asked for does not exist
  | 'SHAPE' // a tensor's shape differs from the expected one
  | 'DTYPE' // a dtype is unknown or unsupported
  | 'CONFIG' // an option or configuration value is invalid
  | 'BACKEND' // a compute backend could not be initialised
  | 'IO' // reading or writing failed at the OS level
  | 'STATE' // an operation is not valid in the object's current state
  | 'MEMORY' // a run would need more memory than the machine (or a set limit) has
  | 'NUMERIC'; // NaN/Inf or another numerical failure

/** Where an error comes from: any of these that are known are included in the message. */
export interface XltErrorLocation {
  /** File path the problem was found in. */
  file?: string;
  /** 1-based line number in `file`. */
  line?: number;
  /** Field, key, column or option name. */
  field?: string;
  /** Tensor or parameter name. */
  tensor?: string;
}

export interface XltErrorOptions extends XltErrorLocation {
  cause?: unknown;
}

function locationSuffix(loc: XltErrorLocation): string {
  const parts: string[] = [];
  if (loc.file !== undefined) parts.push(loc.line !== undefined ? `${loc.file}:${loc.line}` : loc.file);
  if (loc.field !== undefined) parts.push(`field '${loc.field}'`);
  if (loc.tensor !== undefined) parts.push(`tensor '${loc.tensor}'`);
  return parts.length > 0 ? ` (${parts.join(', ')})` : '';
}

/**
 * Base class of every error xlt throws on purpose. `code` says what kind of problem it is, and the
 * location fields (file, line, field, tensor) say where; the message includes them.
 */
export class XltError extends Error {
  readonly code: XltErrorCode;
  readonly file?: string;
  readonly line?: number;
  readonly field?: string;
  readonly tensor?: string;
  /** The message without the location suffix. */
  readonly detail: string;

  constructor(code: XltErrorCode, message: string, options: XltErrorOptions = {}) {
    super(
      `${message}${locationSuffix(options)}`,
      options.cause !== undefined ? { cause: options.cause } : undefined,
    );
    this.name = new.target.name;
    this.code = code;
    this.detail = message;
    if (options.file !== undefined) this.file = options.file;
    if (options.line !== undefined) this.line = options.line;
    if (options.field !== undefined) this.field = options.field;
    if (options.tensor !== undefined) this.tensor = options.tensor;
  }
}

/** A file's content does not follow its format (safetensors, JSON, TSV, CoNLL, ...). */
export class XltFormatError extends XltError {
  constructor(message: string, options: XltErrorOptions = {}) {
    super('FORMAT', message, options);
  }
}

/** An option, config value or argument is invalid. */
export class XltConfigError extends XltError {
  constructor(message: string, options: XltErrorOptions = {}) {
    super('CONFIG', message, options);
  }
}

/** A tensor's shape is not the expected one. */
export class XltShapeError extends XltError {
  readonly expected?: readonly number[];
  readonly got?: readonly number[];
  constructor(
    message: string,
    options: XltErrorOptions & { expected?: readonly number[]; got?: readonly number[] } = {},
  ) {
    const { expected, got, ...rest } = options;
    const shapes =
      expected !== undefined && got !== undefined
        ? `: expected [${expected.join(', ')}], got [${got.join(', ')}]`
        : '';
    super('SHAPE', `${message}${shapes}`, rest);
    if (expected !== undefined) this.expected = expected;
    if (got !== undefined) this.got = got;
  }
}

/** Something that was asked for (file, tensor, language, key) does not exist. */
export class XltNotFoundError extends XltError {
  constructor(message: string, options: XltErrorOptions = {}) {
    super('NOT_FOUND', message, options);
  }
}

/** True when `e` is an {@link XltError} (optionally of the given code). */
export function isXltError(e: unknown, code?: XltErrorCode): e is XltError {
  return e instanceof XltError && (code === undefined || e.code === code);
}
