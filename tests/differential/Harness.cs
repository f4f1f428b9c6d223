// Differential-test harness: runs mscorlib methods by reflection on Mono.
// stdin lines: Namespace.Type::Method|type,type,...|arg,arg,...   (args as decimal; doubles
// and floats as hex bit patterns). stdout: one line per input: the result (decimal; doubles
// and floats as hex bit patterns; bool as 1/0) or "exception".
using System;
using System.Globalization;
using System.Reflection;

static class Harness {
    static Type Parse(string name) {
        switch (name) {
            case "int32": return typeof(int);
            case "uint32": return typeof(uint);
            case "int64": return typeof(long);
            case "uint64": return typeof(ulong);
            case "float64": return typeof(double);
            case "float32": return typeof(float);
            case "bool": return typeof(bool);
            case "char": return typeof(char);
        }
        throw new ArgumentException(name);
    }

    static object Value(Type t, string s) {
        long v = long.Parse(s, CultureInfo.InvariantCulture);
        if (t == typeof(int)) return (int)v;
        if (t == typeof(uint)) return (uint)v;
        if (t == typeof(long)) return v;
        if (t == typeof(ulong)) return (ulong)v;
        if (t == typeof(double)) return BitConverter.Int64BitsToDouble(v);
        if (t == typeof(float)) return BitConverter.ToSingle(BitConverter.GetBytes((int)v), 0);
        if (t == typeof(bool)) return v != 0;
        if (t == typeof(char)) return (char)v;
        throw new ArgumentException(t.Name);
    }

    static string Show(object r) {
        if (r is int) return ((int)r).ToString(CultureInfo.InvariantCulture);
        if (r is uint) return ((int)(uint)r).ToString(CultureInfo.InvariantCulture);
        if (r is long) return ((long)r).ToString(CultureInfo.InvariantCulture);
        if (r is ulong) return ((long)(ulong)r).ToString(CultureInfo.InvariantCulture);
        if (r is double) return BitConverter.DoubleToInt64Bits((double)r).ToString(CultureInfo.InvariantCulture);
        if (r is float) return BitConverter.ToInt32(BitConverter.GetBytes((float)r), 0).ToString(CultureInfo.InvariantCulture);
        if (r is bool) return (bool)r ? "1" : "0";
        if (r is char) return ((int)(char)r).ToString(CultureInfo.InvariantCulture);
        return "unsupported";
    }

    static void Main() {
        Assembly corlib = typeof(object).Assembly;
        string line;
        while ((line = Console.ReadLine()) != null) {
            string[] parts = line.Split('|');
            string full = parts[0];
            int sep = full.LastIndexOf("::", StringComparison.Ordinal);
            Type type = corlib.GetType(full.Substring(0, sep).Replace('/', '+'));
            string[] typeNames = parts[1].Length == 0 ? new string[0] : parts[1].Split(',');
            string[] argTexts = parts[2].Length == 0 ? new string[0] : parts[2].Split(',');
            Type[] types = new Type[typeNames.Length];
            object[] args = new object[typeNames.Length];
            for (int i = 0; i < types.Length; i++) {
                types[i] = Parse(typeNames[i]);
                args[i] = Value(types[i], argTexts[i]);
            }
            MethodInfo m = type == null ? null : type.GetMethod(full.Substring(sep + 2),
                BindingFlags.Static | BindingFlags.Public | BindingFlags.NonPublic, null, types, null);
            // Methods of generic types need an instantiation: not comparable here.
            if (m == null || m.ContainsGenericParameters) { Console.WriteLine("missing"); continue; }
            try {
                Console.WriteLine(Show(m.Invoke(null, args)));
            } catch (TargetInvocationException) {
                Console.WriteLine("exception");
            }
        }
    }
}
