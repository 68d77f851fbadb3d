// Kubernetes quantities and Go durations, parsed the way the API server's CEL libraries
// read them, so the TypeScript twins of the CRD's CEL rules compare like the server.

/** Kubernetes resource.Quantity syntax (what `isQuantity` accepts). */
export const QUANTITY_PATTERN =
  "^(\\+|-)?(([0-9]+(\\.[0-9]*)?)|(\\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|([eE](\\+|-)?(([0-9]+(\\.[0-9]*)?)|(\\.[0-9]+))))?$";

/** Go time.ParseDuration syntax, positive only ("2160h", "1h30m"). */
export const DURATION_PATTERN = "^([0-9]+(\\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$";

const quantityRegExp = new RegExp(QUANTITY_PATTERN);
const durationRegExp = new RegExp(DURATION_PATTERN);

export function isQuantity(text: string): boolean {
  return quantityRegExp.test(text);
}

export function isDuration(text: string): boolean {
  return durationRegExp.test(text);
}

const binarySuffix: Record<string, number> = {
  Ki: 2 ** 10,
  Mi: 2 ** 20,
  Gi: 2 ** 30,
  Ti: 2 ** 40,
  Pi: 2 ** 50,
  Ei: 2 ** 60,
};
const decimalSuffix: Record<string, number> = {
  n: 1e-9,
  u: 1e-6,
  m: 1e-3,
  "": 1,
  k: 1e3,
  M: 1e6,
  G: 1e9,
  T: 1e12,
  P: 1e15,
  E: 1e18,
};

/** The value of a quantity as a number (precise enough to order storage sizes). Throws on bad syntax. */
export function parseQuantity(text: string): number {
  if (!isQuantity(text)) throw new Error(`invalid quantity ${JSON.stringify(text)}`);
  const m = /^([+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+))(.*)$/.exec(text);
  const number = Number(m?.[1]);
  const suffix = m?.[2] ?? "";
  const binary = binarySuffix[suffix];
  if (binary !== undefined) return number * binary;
  const decimal = decimalSuffix[suffix];
  if (decimal !== undefined) return number * decimal;
  return number * 10 ** Number(suffix.slice(1));
}

const durationUnitMs: Record<string, number> = { ns: 1e-6, us: 1e-3, µs: 1e-3, ms: 1, s: 1e3, m: 60e3, h: 3600e3 };

/** A Go duration in milliseconds. Throws on bad syntax. */
export function parseDuration(text: string): number {
  if (!isDuration(text)) throw new Error(`invalid duration ${JSON.stringify(text)}`);
  let total = 0;
  for (const [, value, unit] of text.matchAll(/([0-9]+(?:\.[0-9]+)?)(ns|us|µs|ms|s|m|h)/g)) {
    total += Number(value) * (durationUnitMs[unit ?? ""] ?? Number.NaN);
  }
  return total;
}
