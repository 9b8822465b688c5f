/**
 * @internal A pickle reader that executes nothing: it builds plain values (numbers, strings, lists,
 * tuples, dicts) and hands every global, call (REDUCE/NEWOBJ), BUILD and persistent id to hooks,
 * which decide what is allowed. Opcodes of protocols 2 to 5 that torch state dicts can contain are
 * supported; the text opcodes of protocols 0/1 are not.
 */

/** @internal A `module.name` reference (GLOBAL / STACK_GLOBAL), resolved by the hooks. */
export class PyGlobal {
  constructor(
    readonly module: string,
    readonly name: string,
  ) {}
  get qualified(): string {
    return `${this.module}.${this.name}`;
  }
}

/** @internal A Python tuple (lists are JS arrays). */
export class PyTuple {
  constructor(readonly items: PyValue[]) {}
}

/** @internal A Python dict or OrderedDict (insertion-ordered, primitive keys). */
export class PyDict {
  readonly map = new Map<PyKey, PyValue>();
  constructor(readonly type: 'dict' | 'OrderedDict' = 'dict') {}
}

/** @internal Dict keys the reader accepts. */
export type PyKey = string | number | bigint | boolean | null;

/** @internal A value on the unpickler's stack; `object` stands for what the hooks return (e.g. tensors). */
export type PyValue = PyKey | Uint8Array | PyValue[] | PyTuple | PyDict | PyGlobal | object;

/** @internal What the pickle may do, decided by the caller. Each hook throws to refuse. */
export interface UnpickleHooks {
  /** GLOBAL / STACK_GLOBAL. */
  findGlobal(module: string, name: string): PyValue;
  /** REDUCE: `callable(*args)`. */
  reduce(callable: PyValue, args: PyValue[]): PyValue;
  /** NEWOBJ / NEWOBJ_EX: `cls.__new__(cls, *args)`. */
  newObj(cls: PyValue, args: PyValue[]): PyValue;
  /** BUILD: `obj.__setstate__(state)`. */
  build(obj: PyValue, state: PyValue): void;
  /** BINPERSID. */
  persistentLoad(pid: PyValue): PyValue;
  /** Error for a malformed pickle (`at` is the byte offset of the opcode). */
  error(message: string, at: number): Error;
}

const MARK = Symbol('mark');

const OPCODE_NAMES: Record<number, string> = {
  40: 'MARK',
  46: 'STOP',
  48: 'POP',
  49: 'POP_MARK',
  50: 'DUP',
  66: 'BINBYTES',
  67: 'SHORT_BINBYTES',
  71: 'BINFLOAT',
  74: 'BININT',
  75: 'BININT1',
  77: 'BININT2',
  78: 'NONE',
  81: 'BINPERSID',
  82: 'REDUCE',
  84: 'BINSTRING',
  85: 'SHORT_BINSTRING',
  88: 'BINUNICODE',
  93: 'EMPTY_LIST',
  97: 'APPEND',
  98: 'BUILD',
  99: 'GLOBAL',
  100: 'DICT',
  101: 'APPENDS',
  104: 'BINGET',
  106: 'LONG_BINGET',
  108: 'LIST',
  113: 'BINPUT',
  114: 'LONG_BINPUT',
  115: 'SETITEM',
  116: 'TUPLE',
  117: 'SETITEMS',
  125: 'EMPTY_DICT',
  41: 'EMPTY_TUPLE',
  128: 'PROTO',
  129: 'NEWOBJ',
  133: 'TUPLE1',
  134: 'TUPLE2',
  135: 'TUPLE3',
  136: 'NEWTRUE',
  137: 'NEWFALSE',
  138: 'LONG1',
  139: 'LONG4',
  140: 'SHORT_BINUNICODE',
  141: 'BINUNICODE8',
  142: 'BINBYTES8',
  146: 'NEWOBJ_EX',
  147: 'STACK_GLOBAL',
  148: 'MEMOIZE',
  149: 'FRAME',
};

const utf8 = new TextDecoder('utf-8', { fatal: true });

function isKey(v: unknown): v is PyKey {
  return (
    v === null ||
    typeof v === 'string' ||
    typeof v === 'number' ||
    typeof v === 'bigint' ||
    typeof v === 'boolean'
  );
}

/** Little-endian two's complement integer of LONG1/LONG4, as a number when it is safe. */
function decodeLong(bytes: Uint8Array): number | bigint {
  if (bytes.length === 0) return 0;
  let v = 0n;
  for (let i = bytes.length - 1; i >= 0; i--) v = (v << 8n) | BigInt(bytes[i] as number);
  if ((bytes[bytes.length - 1] as number) & 0x80) v -= 1n << BigInt(8 * bytes.length);
  return v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v;
}

/** @internal Unpickles `data` with `hooks` deciding every global, call and persistent id. */
export function unpickle(data: Uint8Array, hooks: UnpickleHooks): PyValue {
  const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  const stack: Array<PyValue | typeof MARK> = [];
  const memo = new Map<number, PyValue>();
  let pos = 0;
  let at = 0;
  let op = 0;

  const fail = (message: string): Error => hooks.error(message, at);
  const need = (n: number): number => {
    if (pos + n > data.length)
      throw fail(`pickle ends inside ${OPCODE_NAMES[op] ?? 'an opcode'} (needs ${n} more bytes)`);
    const p = pos;
    pos += n;
    return p;
  };
  const bytes = (n: number): Uint8Array => {
    const p = need(n);
    return data.subarray(p, p + n);
  };
  const text = (n: number): string => {
    try {
      return utf8.decode(bytes(n));
    } catch {
      throw fail('string is not valid UTF-8');
    }
  };
  const size8 = (): number => {
    const v = view.getBigUint64(need(8), true);
    if (v > BigInt(data.length)) throw fail(`length ${v} runs past the end of the pickle`);
    return Number(v);
  };
  const line = (): string => {
    const end = data.indexOf(0x0a, pos);
    if (end < 0) throw fail('GLOBAL name is not terminated by a newline');
    const s = text(end - pos);
    pos = end + 1;
    return s;
  };
  const pop = (): PyValue => {
    const v = stack.pop();
    if (v === undefined || v === MARK) throw fail(`${OPCODE_NAMES[op]} found no value on the stack`);
    return v;
  };
  const top = (): PyValue => {
    const v = stack[stack.length - 1];
    if (v === undefined || v === MARK) throw fail(`${OPCODE_NAMES[op]} found no value on the stack`);
    return v;
  };
  const popMark = (): PyValue[] => {
    const m = stack.lastIndexOf(MARK);
    if (m < 0) throw fail(`${OPCODE_NAMES[op]} found no MARK on the stack`);
    const items = stack.splice(m) as Array<PyValue | typeof MARK>;
    items.shift();
    return items as PyValue[];
  };
  const memoGet = (i: number): PyValue => {
    if (!memo.has(i)) throw fail(`memo slot ${i} is read before it is written`);
    return memo.get(i) as PyValue;
  };
  const setItems = (dict: PyValue, items: PyValue[]): void => {
    if (!(dict instanceof PyDict)) throw fail(`${OPCODE_NAMES[op]} on a value that is not a dict`);
    if (items.length % 2 !== 0) throw fail(`${OPCODE_NAMES[op]} with an odd number of keys and values`);
    for (let i = 0; i < items.length; i += 2) {
      const k = items[i];
      if (!isKey(k)) throw fail('dict key is not a string, number, bool or None');
      dict.map.set(k, items[i + 1] as PyValue);
    }
  };
  const append = (list: PyValue, items: PyValue[]): void => {
    if (!Array.isArray(list)) throw fail(`${OPCODE_NAMES[op]} on a value that is not a list`);
    for (const it of items) list.push(it);
  };

  while (true) {
    at = pos;
    op = data[need(1)] as number;
    switch (op) {
      case 0x80: {
        // PROTO
        const proto = data[need(1)] as number;
        if (proto > 5) throw fail(`pickle protocol ${proto} is newer than 5`);
        break;
      }
      case 0x95: // FRAME: a length prefix only
        need(8);
        break;
      case 0x2e: {
        // STOP
        if (stack.length === 0) throw fail('STOP with an empty stack');
        return pop();
      }
      case 0x28:
        stack.push(MARK);
        break;
      case 0x30:
        pop();
        break;
      case 0x31:
        popMark();
        break;
      case 0x32:
        stack.push(top());
        break;
      case 0x4e:
        stack.push(null);
        break;
      case 0x88:
        stack.push(true);
        break;
      case 0x89:
        stack.push(false);
        break;
      case 0x4a:
        stack.push(view.getInt32(need(4), true));
        break;
      case 0x4b:
        stack.push(data[need(1)] as number);
        break;
      case 0x4d:
        stack.push(view.getUint16(need(2), true));
        break;
      case 0x8a:
        stack.push(decodeLong(bytes(data[need(1)] as number)));
        break;
      case 0x8b: {
        const n = view.getInt32(need(4), true);
        if (n < 0) throw fail('LONG4 with a negative length');
        // state dicts hold small integers: a huge one is refused, not decoded (quadratic in BigInt)
        if (n > 16) throw fail(`LONG4 of ${n} bytes (a state dict has integers of at most 16)`);
        stack.push(decodeLong(bytes(n)));
        break;
      }
      case 0x47:
        stack.push(view.getFloat64(need(8), false));
        break;
      case 0x58:
        stack.push(text(view.getUint32(need(4), true)));
        break;
      case 0x8c:
        stack.push(text(data[need(1)] as number));
        break;
      case 0x8d:
        stack.push(text(size8()));
        break;
      case 0x54: {
        // BINSTRING (a Python 2 str; torch loads with encoding utf-8)
        const n = view.getInt32(need(4), true);
        if (n < 0) throw fail('BINSTRING with a negative length');
        stack.push(text(n));
        break;
      }
      case 0x55:
        stack.push(text(data[need(1)] as number));
        break;
      case 0x42:
        stack.push(bytes(view.getUint32(need(4), true)).slice());
        break;
      case 0x43:
        stack.push(bytes(data[need(1)] as number).slice());
        break;
      case 0x8e:
        stack.push(bytes(size8()).slice());
        break;
      case 0x5d:
        stack.push([]);
        break;
      case 0x7d:
        stack.push(new PyDict());
        break;
      case 0x29:
        stack.push(new PyTuple([]));
        break;
      case 0x6c:
        stack.push(popMark());
        break;
      case 0x74:
        stack.push(new PyTuple(popMark()));
        break;
      case 0x64: {
        const d = new PyDict();
        setItems(d, popMark());
        stack.push(d);
        break;
      }
      case 0x85:
      case 0x86:
      case 0x87: {
        const n = op - 0x84;
        const items: PyValue[] = [];
        for (let i = 0; i < n; i++) items.unshift(pop());
        stack.push(new PyTuple(items));
        break;
      }
      case 0x71:
        memo.set(data[need(1)] as number, top());
        break;
      case 0x72:
        memo.set(view.getUint32(need(4), true), top());
        break;
      case 0x94:
        memo.set(memo.size, top());
        break;
      case 0x68:
        stack.push(memoGet(data[need(1)] as number));
        break;
      case 0x6a:
        stack.push(memoGet(view.getUint32(need(4), true)));
        break;
      case 0x73: {
        const v = pop();
        const k = pop();
        setItems(top(), [k, v]);
        break;
      }
      case 0x75: {
        const items = popMark();
        setItems(top(), items);
        break;
      }
      case 0x61: {
        const v = pop();
        append(top(), [v]);
        break;
      }
      case 0x65: {
        const items = popMark();
        append(top(), items);
        break;
      }
      case 0x63: {
        const module = line();
        const name = line();
        stack.push(hooks.findGlobal(module, name));
        break;
      }
      case 0x93: {
        const name = pop();
        const module = pop();
        if (typeof module !== 'string' || typeof name !== 'string')
          throw fail('STACK_GLOBAL needs a module and a name string');
        stack.push(hooks.findGlobal(module, name));
        break;
      }
      case 0x52: {
        const args = pop();
        const callable = pop();
        if (!(args instanceof PyTuple)) throw fail('REDUCE arguments are not a tuple');
        stack.push(hooks.reduce(callable, args.items));
        break;
      }
      case 0x81: {
        const args = pop();
        const cls = pop();
        if (!(args instanceof PyTuple)) throw fail('NEWOBJ arguments are not a tuple');
        stack.push(hooks.newObj(cls, args.items));
        break;
      }
      case 0x92: {
        const kwargs = pop();
        const args = pop();
        const cls = pop();
        if (!(args instanceof PyTuple)) throw fail('NEWOBJ_EX arguments are not a tuple');
        if (!(kwargs instanceof PyDict) || kwargs.map.size > 0)
          throw fail('NEWOBJ_EX with keyword arguments is not supported');
        stack.push(hooks.newObj(cls, args.items));
        break;
      }
      case 0x62: {
        const state = pop();
        hooks.build(top(), state);
        break;
      }
      case 0x51:
        stack.push(hooks.persistentLoad(pop()));
        break;
      default: {
        const name = OPCODE_NAMES[op];
        throw fail(
          name !== undefined
            ? `pickle opcode ${name} is not supported`
            : `unknown or unsupported pickle opcode 0x${op.toString(16).padStart(2, '0')} ('${String.fromCharCode(op)}')`,
        );
      }
    }
  }
}
