/**
 * A small, strict XML reader: enough to read back the SCXML this project writes (elements, attributes in
 * double or single quotes, comments, the prolog, character references, text) and to reject anything
 * malformed, so the round-trip test proves the export is well-formed XML rather than trusting the writer.
 * Namespaces are not resolved: names keep their prefix (`ts:claims`). No DTDs, no CDATA, no processing
 * instructions other than the prolog (the writer emits none).
 */

/** An element: its qualified name, attributes, child elements, and its text (concatenated, trimmed). */
export interface XmlElement {
  name: string;
  attributes: Record<string, string>;
  children: XmlElement[];
  text: string;
  /** The comments directly inside it, in order. */
  comments: string[];
}

/** Thrown on malformed input, with the offset where reading stopped. */
export class XmlReadError extends Error {
  constructor(
    readonly offset: number,
    readonly reason: string,
  ) {
    super(`XML at offset ${offset}: ${reason}`);
    this.name = 'XmlReadError';
  }
}

/** The longest document this reader accepts, a limit against runaway input. */
export const xmlCharsMax = 16 * 1024 * 1024;

const namePattern = /[A-Za-z_][\w.:-]*/y;

function decode(text: string, offset: number): string {
  return text.replace(/&(#x[0-9a-fA-F]+|#[0-9]+|[a-z]+);|&/g, (whole, ref: string | undefined) => {
    if (ref === undefined) throw new XmlReadError(offset, 'bare & in text');
    if (ref.startsWith('#x')) return String.fromCodePoint(parseInt(ref.slice(2), 16));
    if (ref.startsWith('#')) return String.fromCodePoint(parseInt(ref.slice(1), 10));
    const named: Record<string, string> = { amp: '&', lt: '<', gt: '>', quot: '"', apos: "'" };
    const value = named[ref];
    if (value === undefined) throw new XmlReadError(offset, `unknown entity ${whole}`);
    return value;
  });
}

/** Reads a document and returns its root element; throws {@link XmlReadError}. */
export function readXml(source: string): XmlElement {
  if (source.length > xmlCharsMax) throw new XmlReadError(0, `document longer than ${xmlCharsMax} characters`);
  let at = 0;
  const skipSpace = (): void => {
    while (at < source.length && /\s/.test(source[at]!)) at++;
  };
  const expect = (literal: string): void => {
    if (!source.startsWith(literal, at)) throw new XmlReadError(at, `expected ${JSON.stringify(literal)}`);
    at += literal.length;
  };
  const readName = (): string => {
    namePattern.lastIndex = at;
    const match = namePattern.exec(source);
    if (!match) throw new XmlReadError(at, 'expected a name');
    at += match[0].length;
    return match[0];
  };
  const readComment = (): string => {
    expect('<!--');
    const end = source.indexOf('-->', at);
    if (end < 0) throw new XmlReadError(at, 'unterminated comment');
    const text = source.slice(at, end);
    if (text.includes('--')) throw new XmlReadError(at, '"--" inside a comment');
    at = end + 3;
    return text.trim();
  };
  const skipMisc = (): void => {
    for (;;) {
      skipSpace();
      if (source.startsWith('<!--', at)) readComment();
      else return;
    }
  };
  const readElement = (): XmlElement => {
    expect('<');
    const name = readName();
    const attributes: Record<string, string> = {};
    for (;;) {
      const before = at;
      skipSpace();
      if (source.startsWith('/>', at)) {
        at += 2;
        return { name, attributes, children: [], text: '', comments: [] };
      }
      if (source[at] === '>') {
        at++;
        break;
      }
      if (at === before) throw new XmlReadError(at, `expected whitespace before an attribute of <${name}>`);
      const attribute = readName();
      if (attribute in attributes) throw new XmlReadError(at, `duplicate attribute ${attribute} on <${name}>`);
      skipSpace();
      expect('=');
      skipSpace();
      const quote = source[at];
      if (quote !== '"' && quote !== "'") throw new XmlReadError(at, 'expected a quoted attribute value');
      const end = source.indexOf(quote, at + 1);
      if (end < 0) throw new XmlReadError(at, 'unterminated attribute value');
      const raw = source.slice(at + 1, end);
      if (raw.includes('<')) throw new XmlReadError(at, '< inside an attribute value');
      attributes[attribute] = decode(raw, at);
      at = end + 1;
    }
    const children: XmlElement[] = [];
    const comments: string[] = [];
    let text = '';
    for (;;) {
      if (at >= source.length) throw new XmlReadError(at, `unterminated <${name}>`);
      if (source.startsWith('</', at)) {
        at += 2;
        const closing = readName();
        if (closing !== name) throw new XmlReadError(at, `</${closing}> closes <${name}>`);
        skipSpace();
        expect('>');
        return { name, attributes, children, text: text.trim(), comments };
      }
      if (source.startsWith('<!--', at)) comments.push(readComment());
      else if (source[at] === '<') children.push(readElement());
      else {
        const end = source.indexOf('<', at);
        if (end < 0) throw new XmlReadError(at, `unterminated <${name}>`);
        text += decode(source.slice(at, end), at);
        at = end;
      }
    }
  };
  if (source.startsWith('<?xml', at)) {
    const end = source.indexOf('?>', at);
    if (end < 0) throw new XmlReadError(at, 'unterminated prolog');
    at = end + 2;
  }
  skipMisc();
  const root = readElement();
  skipMisc();
  if (at !== source.length) throw new XmlReadError(at, 'content after the root element');
  return root;
}

/** Every element of a tree, depth first, with its parent (null for the root). */
export function* walkXml(element: XmlElement, parent: XmlElement | null = null): Generator<{ element: XmlElement; parent: XmlElement | null }> {
  yield { element, parent };
  for (const child of element.children) yield* walkXml(child, element);
}
