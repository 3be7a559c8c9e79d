/** Luhn (mod 10) check over a string of digits. */
export function luhnValid(digits: string): boolean {
  let sum = 0;
  let double = false;
  for (let i = digits.length - 1; i >= 0; i--) {
    let d = digits.charCodeAt(i) - 48;
    if (d < 0 || d > 9) return false;
    if (double) {
      d *= 2;
      if (d > 9) d -= 9;
    }
    sum += d;
    double = !double;
  }
  return sum % 10 === 0;
}

/**
 * ISO 13616 IBAN check: country letters, check digits, 11..30 more letters or digits (spaces ignored,
 * case-insensitive) and the mod-97 remainder 1. One pass over the characters, nothing allocated: the
 * detector runs it on every candidate.
 */
export function ibanValid(value: string): boolean {
  let length = 0;
  // The remainder of the rearranged number (all but the first four characters, then those four).
  let rest = 0;
  let head = 0;
  let headDigits = 1;
  for (let i = 0; i < value.length; i++) {
    let c = value.charCodeAt(i);
    if (c === 0x20) continue;
    if (c >= 0x61 && c <= 0x7a) c -= 0x20;
    const letter = c >= 0x41 && c <= 0x5a;
    const digit = c >= 0x30 && c <= 0x39;
    if (length < 2 ? !letter : length < 4 ? !digit : !letter && !digit) return false;
    // A letter counts as two digits (A = 10 … Z = 35); piecewise mod 97 keeps every value small.
    const v = letter ? c - 55 : c - 0x30;
    const scale = letter ? 100 : 10;
    if (length < 4) {
      head = head * scale + v;
      headDigits *= scale;
    } else {
      rest = (rest * scale + v) % 97;
    }
    length++;
  }
  if (length < 15 || length > 34) return false;
  return (rest * (headDigits % 97) + head) % 97 === 1;
}

/** US SSN areas, groups and serials the SSA never issues: area 000, 666 or 900-999; group 00; serial 0000. */
export function ssnValid(area: string, group: string, serial: string): boolean {
  const a = Number(area);
  return a !== 0 && a !== 666 && a < 900 && group !== '00' && serial !== '0000';
}
