import { XltShapeError } from '@xlt/core';

/**
 * Symbolic dimensions: sizes known only when the graph runs (the batch, the sequence length, the
 * number of labelled positions). A traced graph with symbolic dimensions serves every batch shape;
 * where an op needs such a size (a Reshape target, an Expand shape, a Range limit) the tracer computes
 * it in the graph from the value the dimension was read from (see `Tracer.dimValue`).
 *
 * A dimension is a number or an interned {@link SymDim}: equal dimensions are the same object, so
 * `===` and `shape.join(',')` compare them. Products of symbols are kept in a canonical form
 * (`2*batch*sequence`), so `[batch, sequence, H]` reshaped to `[-1, H]` and back keeps its names.
 */

/** A monomial: coef x the product of symbol names (sorted, repeated for powers). */
interface Monomial {
  kind: 'mono';
  coef: number;
  factors: readonly string[];
}

/** Any other expression (differences, inexact quotients), evaluated as written. */
interface Compound {
  kind: 'sub' | 'add' | 'div' | 'mul';
  a: Dim;
  b: Dim;
}

/** A dimension whose value the graph reads at run time. */
export class SymDim {
  /** @internal use {@link symbol} and the dim arithmetic functions. */
  constructor(
    readonly key: string,
    readonly expr: Monomial | Compound,
  ) {}

  toString(): string {
    return this.key;
  }
}

/** A static size or a symbolic one. */
export type Dim = number | SymDim;

const interned = new Map<string, SymDim>();

function intern(key: string, expr: Monomial | Compound): SymDim {
  let d = interned.get(key);
  if (d === undefined) {
    d = new SymDim(key, expr);
    interned.set(key, d);
  }
  return d;
}

/** The named symbolic dimension `name` (e.g. `batch`, `sequence`). */
export function symbol(name: string): SymDim {
  if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(name))
    throw new XltShapeError(`dimension names are identifiers, got '${name}'`);
  return mono(1, [name]) as SymDim;
}

/** True for a static size. */
export const isStatic = (d: Dim): d is number => typeof d === 'number';

/** True when every dimension of `shape` is static. */
export const allStatic = (shape: readonly Dim[]): shape is readonly number[] => shape.every(isStatic);

function mono(coef: number, factors: readonly string[]): Dim {
  if (factors.length === 0 || coef === 0) return coef;
  const sorted = [...factors].sort();
  const key = `${coef === 1 ? '' : `${coef}*`}${sorted.join('*')}`;
  return intern(key, { kind: 'mono', coef, factors: sorted });
}

const asMono = (d: Dim): Monomial | undefined =>
  typeof d === 'number'
    ? { kind: 'mono', coef: d, factors: [] }
    : d.expr.kind === 'mono'
      ? d.expr
      : undefined;

function compound(kind: Compound['kind'], a: Dim, b: Dim): SymDim {
  const op = { sub: '-', add: '+', div: '/', mul: '*' }[kind];
  return intern(`(${a}${op}${b})`, { kind, a, b });
}

/** a x b. */
export function dimMul(a: Dim, b: Dim): Dim {
  if (a === 1) return b;
  if (b === 1) return a;
  const x = asMono(a);
  const y = asMono(b);
  if (x !== undefined && y !== undefined) return mono(x.coef * y.coef, [...x.factors, ...y.factors]);
  return compound('mul', a, b);
}

const gcd = (a: number, b: number): number => (b === 0 ? Math.abs(a) : gcd(b, a % b));

/** a / b: exact for static sizes and monomials that divide; otherwise the (floor) quotient in the graph. */
export function dimDiv(a: Dim, b: Dim): Dim {
  if (b === 1) return a;
  if (a === b) return 1;
  const x = asMono(a);
  const y = asMono(b);
  if (x === undefined || y === undefined) return compound('div', a, b);
  // cancel common symbols and the coefficients' common divisor
  const rest = [...x.factors];
  const den: string[] = [];
  for (const f of y.factors) {
    const i = rest.indexOf(f);
    if (i >= 0) rest.splice(i, 1);
    else den.push(f);
  }
  const g = gcd(x.coef, y.coef) || 1;
  const num = mono(x.coef / g, rest);
  const under = mono(y.coef / g, den);
  if (isStatic(num) && isStatic(under) && Number.isInteger(num / under)) return num / under;
  return under === 1 ? num : compound('div', num, under);
}

/** a + b. */
export const dimAdd = (a: Dim, b: Dim): Dim =>
  isStatic(a) && isStatic(b) ? a + b : a === 0 ? b : b === 0 ? a : compound('add', a, b);

/** a - b. */
export const dimSub = (a: Dim, b: Dim): Dim =>
  isStatic(a) && isStatic(b) ? a - b : b === 0 ? a : a === b ? 0 : compound('sub', a, b);

/** The product of a shape's dimensions. */
export const dimProduct = (shape: readonly Dim[]): Dim => shape.reduce<Dim>((p, d) => dimMul(p, d), 1);

/** A static size, or an error naming what needed one. */
export function staticDim(d: Dim, what: string): number {
  if (!isStatic(d)) throw new XltShapeError(`${what} needs a static size, got the dynamic '${d}'`);
  return d;
}

/** The symbols a dimension is built from (for binding checks). */
export function symbolsOf(d: Dim): string[] {
  if (isStatic(d)) return [];
  const e = d.expr;
  return e.kind === 'mono' ? [...e.factors] : [...symbolsOf(e.a), ...symbolsOf(e.b)];
}

/** A shape for error details (`XltShapeError`'s numbers): symbolic sizes as -1, named in the message. */
export const numericShape = (shape: readonly Dim[]): number[] => shape.map((d) => (isStatic(d) ? d : -1));
