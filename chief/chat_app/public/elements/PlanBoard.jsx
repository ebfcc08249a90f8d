// The plan as a graph: one box per step, parallel steps side by side, coloured by live status.
// Props (set by chief/chat_app/board.py): title, status, nodes[{key, agent, marks, x, y, status}], edges, width, height.
const COLORS = {
  pending: ["#f4f4f5", "#a1a1aa"], queued: ["#e0f2fe", "#0284c7"], running: ["#fef9c3", "#ca8a04"],
  retrying: ["#ffedd5", "#ea580c"], succeeded: ["#dcfce7", "#16a34a"], failed: ["#fee2e2", "#dc2626"],
  skipped: ["#f4f4f5", "#71717a"], waiting: ["#ede9fe", "#7c3aed"], rejected: ["#fee2e2", "#9f1239"],
  cancelled: ["#f4f4f5", "#52525b"],
};

export default function PlanBoard() {
  const w = props.nodeWidth || 170;
  const h = props.nodeHeight || 52;
  const byKey = {};
  (props.nodes || []).forEach((n) => { byKey[n.key] = n; });
  return (
    <div data-plan-board={props.title} data-run-status={props.status} style={{ width: "100%", overflowX: "auto" }}>
      <div style={{ fontSize: 13, margin: "4px 0", color: "#52525b" }}>
        {props.title} · <span data-testid="run-status">{props.status}</span>
      </div>
      <svg width={props.width} height={props.height} viewBox={`0 0 ${props.width} ${props.height}`}
           style={{ fontFamily: "sans-serif", maxWidth: "100%" }}>
        <defs>
          <marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" orient="auto">
            <path d="M 0 0 L 10 5 L 0 10 z" fill="#a1a1aa" />
          </marker>
        </defs>
        {(props.edges || []).map(([a, b]) => {
          const s = byKey[a]; const t = byKey[b];
          if (!s || !t) return null;
          return <line key={a + "->" + b} x1={s.x + w / 2} y1={s.y + h} x2={t.x + w / 2} y2={t.y - 2}
                       stroke="#a1a1aa" strokeWidth="1.5" markerEnd="url(#arrow)" />;
        })}
        {(props.nodes || []).map((n) => {
          const [fill, stroke] = COLORS[n.status] || COLORS.pending;
          return (
            <g key={n.key} data-step={n.key} data-status={n.status}>
              <rect x={n.x} y={n.y} width={w} height={h} rx="8" fill={fill} stroke={stroke} strokeWidth="2" />
              <text x={n.x + w / 2} y={n.y + 20} textAnchor="middle" fontSize="13" fontWeight="600" fill="#18181b">
                {n.key.length > 22 ? n.key.slice(0, 21) + "…" : n.key}
              </text>
              <text x={n.x + w / 2} y={n.y + 38} textAnchor="middle" fontSize="11" fill="#52525b">
                {(n.agent.length > 18 ? n.agent.slice(0, 17) + "…" : n.agent) + " · " + n.status}
              </text>
            </g>
          );
        })}
      </svg>
    </div>
  );
}
