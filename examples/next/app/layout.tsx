import type { ReactNode } from "react";

export const metadata = { title: "DomVia chat · Next.js", icons: { icon: "data:," } };

export default function RootLayout({ children }: { children: ReactNode }) {
  return (
    <html lang="en">
      <body>{children}</body>
    </html>
  );
}
