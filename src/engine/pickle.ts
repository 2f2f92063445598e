/**
 * A restricted reader of Python pickles, for PyTorch checkpoints. Python's own unpickler calls whatever the
 * stream names (any module, any function): loading an untrusted pickle runs its code. This reader calls
 * nothing: it knows the binary opcodes that torch.save emits, builds plain values from them, and resolves a
 * global only through the caller's allow-list. Any other global or opcode stops the read with an error that
 * names it.
 */

/** A Python value as this reader builds it. Tuples and lists are arrays; dicts (and OrderedDicts) are Maps. */
export type PyValue =
  null | boolean | number | bigint | string | Uint8Array | PyValue[] | Map<PyValue, PyValue> | PyGlobal | object;

/** A global the caller allows: a class or function it can stand for, called by REDUCE only if `call` is given. */
export class PyGlobal {
  constructor(
    readonly name: string,
    readonly call?: (args: PyValue[]) => PyValue,
  ) {}
}

export interface UnpickleOptions {
  /** 'module name' (as the GLOBAL opcode spells it) to what it stands for. */
  globals: ReadonlyMap<string, PyGlobal>;
  /** Resolves a persistent id (torch's storage references); without it BINPERSID is refused. */
  persistentLoad?: (pid: PyValue) => PyValue;
  /** Thrown with a message; the caller adds the file. */
  fail: (message: string) => never;
}

const MARK = Symbol('mark');
type Slot = PyValue | typeof MARK;

const OPCODE_NAMES: Record<number, string> = {
  0x81: 'NEWOBJ',
  0x92: 'NEWOBJ_EX',
  0x69: 'INST',
  0x6f: 'OBJ',
  0x82: 'EXT1',
  0x83: 'EXT2',
  0x84: 'EXT4',
  0x49: 'INT',
  0x4c: 'LONG',
  0x46: 'FLOAT',
  0x53: 'STRING',
  0x56: 'UNICODE',
  0x50: 'PERSID',
  0x70: 'PUT',
  0x67: 'GET',
};

/** Reads one pickle from `buf` at `start`; returns its value and the offset just past its STOP. */
export function unpickle(buf: Uint8Array, start: number, options: UnpickleOptions): { value: PyValue; end: number } {
  const fail: (message: string) => never = options.fail;
  const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const stack: Slot[] = [];
  const marks: number[] = [];
  const memo = new Map<number, PyValue>();
  let at = start;

  const need = (n: number, what: string) => {
    if (n < 0 || at + n > buf.length) fail(`pickle ends inside ${what} at byte ${at} (truncated)`);
  };
  const u8 = () => (need(1, 'an opcode argument'), buf[at++]);
  const u16 = () => (need(2, 'an opcode argument'), (at += 2), view.getUint16(at - 2, true));
  const u32 = () => (need(4, 'an opcode argument'), (at += 4), view.getUint32(at - 4, true));
  const u64 = () => {
    need(8, 'an opcode argument');
    const v = view.getBigUint64(at, true);
    at += 8;
    if (v > BigInt(buf.length)) fail(`a length of ${v} bytes at byte ${at - 8} exceeds the file`);
    return Number(v);
  };
  const bytes = (n: number) => {
    need(n, `a ${n}-byte string`);
    at += n;
    return buf.subarray(at - n, at);
  };
  const text = (n: number) => Buffer.from(bytes(n)).toString('utf8');
  const line = () => {
    const endOfLine = buf.indexOf(0x0a, at);
    if (endOfLine < 0) fail(`pickle ends inside a GLOBAL name at byte ${at} (truncated)`);
    const s = Buffer.from(buf.subarray(at, endOfLine)).toString('latin1');
    at = endOfLine + 1;
    return s;
  };
  const pop = (): PyValue => {
    const v = stack.pop();
    if (v === undefined || v === MARK) fail(`pickle pops an empty stack at byte ${at}`);
    return v as PyValue;
  };
  const top = (): PyValue => {
    const v = stack[stack.length - 1];
    if (v === undefined || v === MARK) fail(`pickle reads an empty stack at byte ${at}`);
    return v as PyValue;
  };
  const popMark = (): PyValue[] => {
    const m = marks.pop();
    if (m === undefined) fail(`pickle closes a MARK it never opened at byte ${at}`);
    return stack.splice(m).slice(1) as PyValue[];
  };
  const signedLittleEndian = (raw: Uint8Array): number | bigint => {
    if (raw.length === 0) return 0;
    let v = 0n;
    for (let i = raw.length - 1; i >= 0; i--) v = (v << 8n) | BigInt(raw[i]);
    if (raw[raw.length - 1] & 0x80) v -= 1n << BigInt(8 * raw.length);
    return v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v;
  };
  const global = (module: string, name: string) => {
    const g = options.globals.get(`${module} ${name}`);
    if (!g)
      fail(
        `names the Python global ${module}.${name}, which childtune does not load: only tensors and their containers are read, and nothing in the file is executed`,
      );
    return g;
  };
  const setItems = (target: PyValue, items: PyValue[]) => {
    if (!(target instanceof Map)) fail(`pickle sets items on a ${describe(target)} at byte ${at}`);
    if (items.length % 2) fail(`pickle sets an odd number of dict items at byte ${at}`);
    for (let i = 0; i < items.length; i += 2) target.set(items[i], items[i + 1]);
  };
  const memoGet = (key: number) => {
    if (!memo.has(key)) fail(`pickle refers to memo entry ${key}, which was never stored (byte ${at})`);
    return memo.get(key)!;
  };

  for (;;) {
    need(1, 'an opcode');
    const position = at;
    const op = buf[at++];
    switch (op) {
      case 0x80:
        u8();
        break; // PROTO
      case 0x95:
        u64();
        break; // FRAME: a length hint, the opcodes follow inline
      case 0x2e: // STOP
        if (stack.length !== 1 || marks.length)
          fail(`pickle stops with ${stack.length} values on its stack at byte ${position}`);
        return { value: stack[0] as PyValue, end: at };
      case 0x28:
        marks.push(stack.length);
        stack.push(MARK);
        break; // MARK
      case 0x7d:
        stack.push(new Map());
        break; // EMPTY_DICT
      case 0x5d:
        stack.push([]);
        break; // EMPTY_LIST
      case 0x29:
        stack.push([]);
        break; // EMPTY_TUPLE
      case 0x74:
        stack.push(popMark());
        break; // TUPLE
      case 0x85:
        stack.push([pop()]);
        break; // TUPLE1
      case 0x86: {
        const b = pop();
        stack.push([pop(), b]);
        break;
      } // TUPLE2
      case 0x87: {
        const c = pop();
        const b = pop();
        stack.push([pop(), b, c]);
        break;
      } // TUPLE3
      case 0x4b:
        stack.push(u8());
        break; // BININT1
      case 0x4d:
        stack.push(u16());
        break; // BININT2
      case 0x4a:
        need(4, 'BININT');
        stack.push(view.getInt32(at, true));
        at += 4;
        break; // BININT
      case 0x8a:
        stack.push(signedLittleEndian(bytes(u8())));
        break; // LONG1
      case 0x8b: {
        // LONG4
        const n = u32();
        if (n > 64) fail(`pickle holds a ${n}-byte integer at byte ${position}; no checkpoint field needs one`);
        stack.push(signedLittleEndian(bytes(n)));
        break;
      }
      case 0x47:
        need(8, 'BINFLOAT');
        stack.push(view.getFloat64(at, false));
        at += 8;
        break; // BINFLOAT (big-endian)
      case 0x58:
        stack.push(text(u32()));
        break; // BINUNICODE
      case 0x8c:
        stack.push(text(u8()));
        break; // SHORT_BINUNICODE
      case 0x8d:
        stack.push(text(u64()));
        break; // BINUNICODE8
      case 0x55:
        stack.push(Buffer.from(bytes(u8())).toString('latin1'));
        break; // SHORT_BINSTRING (Python 2 str)
      case 0x54:
        stack.push(Buffer.from(bytes(u32())).toString('latin1'));
        break; // BINSTRING
      case 0x43:
        stack.push(bytes(u8()));
        break; // SHORT_BINBYTES
      case 0x42:
        stack.push(bytes(u32()));
        break; // BINBYTES
      case 0x8e:
        stack.push(bytes(u64()));
        break; // BINBYTES8
      case 0x4e:
        stack.push(null);
        break; // NONE
      case 0x88:
        stack.push(true);
        break; // NEWTRUE
      case 0x89:
        stack.push(false);
        break; // NEWFALSE
      case 0x71:
        memo.set(u8(), top());
        break; // BINPUT
      case 0x72:
        memo.set(u32(), top());
        break; // LONG_BINPUT
      case 0x94:
        memo.set(memo.size, top());
        break; // MEMOIZE
      case 0x68:
        stack.push(memoGet(u8()));
        break; // BINGET
      case 0x6a:
        stack.push(memoGet(u32()));
        break; // LONG_BINGET
      case 0x63: {
        const module = line();
        stack.push(global(module, line()));
        break;
      } // GLOBAL
      case 0x93: {
        // STACK_GLOBAL
        const name = pop();
        const module = pop();
        if (typeof module !== 'string' || typeof name !== 'string')
          fail(`STACK_GLOBAL at byte ${position} names a global with non-string parts`);
        stack.push(global(module, name));
        break;
      }
      case 0x52: {
        // REDUCE: only an allowed global with a call, applied to a tuple
        const args = pop();
        const callable = pop();
        if (!(callable instanceof PyGlobal) || !callable.call)
          fail(`pickle calls ${describe(callable)} at byte ${position}; only tensor rebuilds are allowed`);
        if (!Array.isArray(args))
          fail(`pickle calls ${callable.name} with ${describe(args)} instead of an argument tuple at byte ${position}`);
        stack.push(callable.call(args));
        break;
      }
      case 0x62: {
        // BUILD: only the attribute dict of a dict (a state_dict's _metadata), which carries no weights
        const state = pop();
        const target = top();
        if (!(target instanceof Map) || !(state instanceof Map || state === null))
          fail(`pickle sets the state of ${describe(target)} at byte ${position}; only dicts are built`);
        break;
      }
      case 0x51: {
        // BINPERSID
        if (!options.persistentLoad)
          fail(`pickle refers to external data at byte ${position}, which this file cannot have`);
        stack.push(options.persistentLoad(pop()));
        break;
      }
      case 0x73: {
        const v = pop();
        const k = pop();
        setItems(top(), [k, v]);
        break;
      } // SETITEM
      case 0x75: {
        const items = popMark();
        setItems(top(), items);
        break;
      } // SETITEMS
      case 0x61: {
        const v = pop();
        const list = top();
        if (!Array.isArray(list)) fail(`pickle appends to ${describe(list)} at byte ${position}`);
        list.push(v);
        break;
      } // APPEND
      case 0x65: {
        const items = popMark();
        const list = top();
        if (!Array.isArray(list)) fail(`pickle appends to ${describe(list)} at byte ${position}`);
        list.push(...items);
        break;
      } // APPENDS
      default:
        fail(
          `pickle opcode ${OPCODE_NAMES[op] ?? `0x${op.toString(16).padStart(2, '0')}`} at byte ${position} is not one torch.save writes; childtune refuses it rather than guess (nothing in the file is executed)`,
        );
    }
  }
}

export function describe(v: unknown): string {
  if (v instanceof PyGlobal) return v.name;
  if (v === null) return 'None';
  if (v instanceof Map) return 'a dict';
  if (Array.isArray(v)) return 'a tuple';
  if (v instanceof Uint8Array) return 'bytes';
  return typeof v === 'object' ? 'an object' : `a ${typeof v}`;
}
